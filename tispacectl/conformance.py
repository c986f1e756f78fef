"""Run Kubernetes' conformance tests (`e2e.test`) against a tenant and summarize the result.

`make conformance` builds e2e.test and the ginkgo CLI (scripts/install-e2e-test.sh) and runs:

    .venv/bin/python -m tispacectl.conformance [--kubeconfig F] [--focus RE] [--skip RE] [--procs N]

Runs e2e.test under the ginkgo CLI, in N parallel processes ([Serial] specs last, one at a time,
as upstream's hack/ginkgo-e2e.sh does). Writes OUT/junit.xml (Ginkgo's full JUnit report),
OUT/junit_NN.xml (the e2e framework's short ones), OUT/e2e.log (the run's output) and
OUT/summary.txt. Failures are counted in groups, each with why it cannot pass on this stack; the
exit code is 0 when every failure is in one of them.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tispace import binaries

INSTALL = Path(__file__).resolve().parents[1] / "scripts" / "install-e2e-test.sh"
DEFAULT_FOCUS = r"\[sig-api-machinery\].*\[Conformance\]"
SPEC_END = re.compile(r"• (?:\[([A-Z]+)\] )?\[([0-9.]+) seconds\]")  # Ginkgo's line after each spec
LABELS = re.compile(r" \[([^\]]*, [^\]]*)\]$")  # the trailing "[sig-x, Conformance]" of a spec name


@dataclass(frozen=True)
class Group:
    """Failures that cannot pass on this stack, found by their spec name or message, and why."""

    name: str
    why: str
    spec: re.Pattern[str] | None = None
    message: re.Pattern[str] | None = None
    label: str = ""
    timeline: re.Pattern[str] | None = None

    def holds(self, failure: Failure) -> bool:
        return bool(
            (self.spec and self.spec.search(failure.spec))
            or (self.message and self.message.search(failure.message))
            or (self.label and self.label in failure.labels)
            or (self.timeline and self.timeline.search(failure.timeline))
        )


@dataclass(frozen=True)
class Failure:
    spec: str
    message: str  # its first line
    labels: tuple[str, ...] = ()
    timeline: str = ""  # the spec's steps and the events of its namespace, dumped on failure


REFUSED = re.compile(r"\{tispace-syncer \} (Host\w+Forbidden|VolumeTypeForbidden)")
"""A tenant pod TiSpace refuses on purpose, in the events a failed spec's timeline lists."""
REJECTED = re.compile(r"\{tispace-syncer \} SyncRejected")
"""The super cluster refused what the syncer sent: a finding, never counted apart."""


# First match wins. Locally every pod is KWOK's: it is bound, gets an IP, turns Running and Ready,
# and no container ever runs in it: nothing listens at its IP, prints, exits, probes or executes.
# Each group needs evidence: a refusal event, a message that waits on a container, the
# NodeConformance label, or the name of a spec known to need one (read from its source).
CONTAINER = re.compile(
    r'expected pod ".*" success|to succeed|Succeeded or Failed|error executing command in container'
    r"|failed to execute command|not reachable|connections failed|Unable to (read|reach)"
    r'|did not start serving|checking pod responses|Failed to find ".*", last result'
    r"|Unexpected websocket logs|job completion|SuccessCriteriaMet|Test Panicked|restarts"
)
GROUPS: list[Group] = [
    Group(
        "refused by tenant isolation",
        "the pod binds a port or the network of the super node it runs on (hostPort, hostNetwork), "
        "which TiSpace refuses for every tenant pod: it would reach outside the tenant's VM",
        message=re.compile(r"hostPort \d+ is not allowed|hostNetwork is not allowed"),
        timeline=REFUSED,
    ),
    Group(
        "scheduling is the super cluster's",
        "the spec patches tenant nodes (fake extended resources, labels a selector then matches), "
        "fills a node's allocatable from the tenant's view, or expects priority preemption; a "
        "tenant's nodes are the super cluster's (the syncer keeps their status and labels, other "
        "tenants' pods use them) and a tenant's priorities never preempt in the super cluster",
        spec=re.compile(
            r"\] (SchedulerPreemption|SchedulerPredicates) |Daemon set \[Serial\] should run and stop complex"
        ),
    ),
    Group(
        "webhooks, conversion and aggregated APIs served by a pod",
        "the tenant API server must call a server in one of the spec's pods (admission webhook, CRD "
        "conversion webhook, the sample aggregated API server); the setup waits for an answer",
        spec=re.compile(
            r"\] (AdmissionWebhook|CustomResourceConversionWebhook|CustomResourceFieldSelectors|Aggregator) "
        ),
    ),
    Group(
        "node conformance: what a kubelet and a container runtime do",
        "the spec checks a container's output, exit code, files, probes, hooks, restarts, resize, "
        "subpath expansion, exec or /etc/hosts, which only a kubelet running the container produces",
        label="NodeConformance",
        spec=re.compile(r"\] (Pod InPlace Resize Container|Variable Expansion|PreStop) "),
    ),
    Group(
        "a pod that serves or exits",
        "the spec sends traffic to a pod (Services, DNS, proxy, kubectl examples), execs into it or "
        "reads what it printed, or waits for its containers to exit (Jobs) or fail to start (an "
        "image that does not exist, a readiness probe made to fail)",
        message=CONTAINER,
        spec=re.compile(
            r"\] (Services should be able to change the type|DNS should|Proxy version v1"
            r"|EndpointSlice should support a Service with multiple|Kubectl client (Update Demo|Guestbook)"
            r"|ServiceAccounts (should mount an API token|ServiceAccountIssuerDiscovery)"
            r"|StatefulSet Basic StatefulSet functionality \[StatefulSetBasic\] (Scaling|Burst scaling"
            r"|should perform rolling updates)|Daemon set \[Serial\] should rollback without unnecessary"
            r"|Deployment deployment should support proportional scaling"
            r"|EmptyDir volumes pod should support shared)"
        ),
    ),
]


@dataclass
class Result:
    passed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # skipped at run time, with reason
    failed: list[Failure] = field(default_factory=list)
    not_selected: int = 0


def parse_junit(path: Path) -> Result:
    res = Result()
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        labels = LABELS.search(name)
        spec = LABELS.sub("", name.removeprefix("[It] ")).replace(" [It]", "")
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            text = bad.get("message") or bad.text or str(case.get("status"))
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
            tags = tuple(t.strip() for t in labels[1].split(",")) if labels else ()
            timeline = "".join(e.text or "" for e in case.iter("system-err"))
            res.failed.append(Failure(spec, first.removeprefix("[FAILED] "), tags, timeline))
        elif not name.startswith("[It] ") and " [It] " not in name:
            continue  # suite setup and report nodes count only when they fail
        elif skip is not None:
            msg = skip.get("message", "")
            if msg == "skipped":  # filtered out by --focus/--skip
                res.not_selected += 1
            else:
                res.skipped.append((spec, msg.removeprefix("skipped - ")))
        else:
            res.passed.append(spec)
    return res


def group_of(failure: Failure) -> Group | None:
    if REJECTED.search(failure.timeline):
        return None
    return next((g for g in GROUPS if g.holds(failure)), None)


def summarize(res: Result) -> tuple[list[str], bool]:
    """The summary lines, and whether every failure is in one of GROUPS."""
    grouped: dict[str, list[Failure]] = {}
    other: list[Failure] = []
    for f in res.failed:
        group = group_of(f)
        (grouped.setdefault(group.name, []) if group else other).append(f)
    apart = sum(map(len, grouped.values()))
    total = len(res.passed) + len(res.failed)
    lines = [
        f"{len(res.passed)} passed, {len(res.failed)} failed, {len(res.skipped)} skipped; "
        f"{len(res.passed)} of the {total - apart} that do not need what this stack cannot give"
    ]
    if other:
        lines += ["", f"failed ({len(other)}):"]
        for f in other:
            lines += [f"  {f.spec}", f"      {f.message}"]
    for g in GROUPS:
        if g.name in grouped:
            lines += ["", f"{g.name} ({len(grouped[g.name])}): {g.why}"]
            lines += [f"    {f.spec}" for f in grouped[g.name]]
    if res.skipped:
        lines += ["", f"skipped ({len(res.skipped)}):"]
        lines += [f"  {spec}: {why}" for spec, why in res.skipped]
    return lines, not other


@dataclass(frozen=True)
class Finished:
    state: str
    spec: str
    seconds: float


def finished_specs(lines: Iterable[str]) -> Iterator[Finished]:
    """Each spec as it finishes, from Ginkgo's verbose output. A spec's report follows a rule of
    dashes: in one process its name first and the `• [state] [N seconds]` line after its steps; in
    parallel, that line first and the name right after it."""
    name: str | None = None
    end: re.Match[str] | None = None
    prev = ""
    for line in lines:
        if line.startswith("-----"):
            name, end = None, None
        elif prev.startswith("-----") and (m := SPEC_END.match(line)):
            end = m
        elif (prev.startswith("-----") or (end and SPEC_END.match(prev))) and line.startswith("["):
            name = LABELS.sub("", line.strip())
        elif name and (m := SPEC_END.search(line)):
            end = m
        if name and end:
            yield Finished(end[1] or "PASSED", name, float(end[2]))
            name, end = None, None
        prev = line


def run_streaming(cmd: list[str], log: Path, t0: float) -> int:
    """Run the specs with their output into `log`, printing one line per finished spec."""
    total = "?"
    with (
        log.open("w") as f,
        subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        ) as p,
    ):
        assert p.stdout is not None

        def logged() -> Iterator[str]:
            nonlocal total
            for line in p.stdout:  # type: ignore[union-attr]
                f.write(line)
                if m := re.match(r"Will run (\d+) of", line):
                    total = m[1]
                yield line

        for done, spec in enumerate(finished_specs(logged()), 1):
            mins, secs = divmod(int(time.monotonic() - t0), 60)
            took = f"{spec.seconds:.0f}s"
            print(f"[{mins:3d}:{secs:02d}] {done}/{total} {spec.state} {spec.spec} ({took})", flush=True)
    return p.returncode


def e2e_bin() -> Path:
    out = subprocess.run(["bash", str(INSTALL), "--print-bin"], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--kubeconfig",
        type=Path,
        default=Path(".tispace/tenants/dev.kubeconfig"),
        help="tenant kubeconfig (default: the sample tenant of `make up`)",
    )
    ap.add_argument("--focus", default=DEFAULT_FOCUS, help=f"specs to run (default: {DEFAULT_FOCUS})")
    ap.add_argument("--skip", default="", help="specs not to run")
    ap.add_argument("--out", type=Path, default=Path(".tispace/conformance"), help="report directory")
    ap.add_argument("--procs", type=int, default=1, help="parallel Ginkgo processes (default: 1)")
    ap.add_argument("--timeout", default="3h", help="Ginkgo's timeout for the whole run")
    ap.add_argument("--bin", type=Path, default=None, help="e2e.test's and ginkgo's directory")
    ap.add_argument("e2e_args", nargs="*", help="more e2e.test flags, after --")
    a = ap.parse_args()

    if not a.kubeconfig.exists():
        print(f"{a.kubeconfig} does not exist: start the stack with `make up` first", file=sys.stderr)
        return 2
    bindir = a.bin or e2e_bin()
    e2e, ginkgo = bindir / "e2e.test", bindir / "ginkgo"
    if not (e2e.exists() and ginkgo.exists()):
        print(f"{e2e} or {ginkgo} is missing: run `bash {INSTALL}`", file=sys.stderr)
        return 2
    out: Path = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in [out / "junit.xml", out / "summary.txt", *out.glob("junit_*.xml")]:
        old.unlink(missing_ok=True)

    t0 = time.monotonic()
    cmd = [
        str(ginkgo),
        f"--procs={a.procs}",
        f"--focus={a.focus}",
        *([f"--skip={a.skip}"] if a.skip else []),
        f"--junit-report={out / 'junit.xml'}",
        f"--timeout={a.timeout}",
        "--no-color",
        "-v",
        str(e2e),
        "--",
        f"--kubeconfig={a.kubeconfig.resolve()}",
        "--provider=skeleton",  # no cloud: nothing to ask about nodes, zones or load balancers
        f"--kubectl-path={binaries.path('kubectl')}",  # `kubectl explain`/`create` in CRD specs
        f"--report-dir={out}",
        f"--e2e-output-dir={out}",
        *a.e2e_args,
    ]
    log = out / "e2e.log"
    print(f"running {e2e.name} in {a.procs} process(es) (focus '{a.focus}'); its output: {log}", flush=True)
    rc = run_streaming(cmd, log, t0)
    mins, secs = divmod(int(time.monotonic() - t0), 60)
    junit = out / "junit.xml"
    if not junit.exists():
        print(f"e2e.test exited with {rc} after {mins}m{secs:02d}s and wrote no {junit}; the end of {log}:")
        print("\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        return 1

    res = parse_junit(junit)
    lines, ok = summarize(res)
    lines[0] += f" in {mins}m{secs:02d}s (e2e.test exit code {rc})"
    if not (res.passed or res.failed):
        lines.append("no spec ran: check --focus and --skip")
        ok = False
    lines += ["", f"reports: {junit}, {out}/junit_NN.xml, log: {log}"]
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
