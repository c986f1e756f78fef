"""Run Kubernetes' conformance tests (`e2e.test`) against a tenant and summarize the result.

`make conformance` builds e2e.test (scripts/install-e2e-test.sh) and runs this script:

    .venv/bin/python scripts/conformance.py [--kubeconfig F] [--focus RE] [--skip RE] [--procs N] [--out DIR]

Runs e2e.test under the ginkgo CLI, in N parallel processes ([Serial] specs last, one at a time,
as upstream's hack/ginkgo-e2e.sh does). Writes OUT/junit.xml (Ginkgo's full JUnit report),
OUT/junit_NN.xml (the e2e framework's short ones), OUT/e2e.log (the run's output) and
OUT/summary.txt. Exits 0 when every failure is
one that needs a container that really runs (local pods are KWOK's: nothing ever runs in them).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from tispace import binaries

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "scripts" / "install-e2e-test.sh"
DEFAULT_FOCUS = r"\[sig-api-machinery\].*\[Conformance\]"
SPEC_END = re.compile(r"• (?:\[([A-Z]+)\] )?\[([0-9.]+) seconds\]")  # Ginkgo's line after each spec
LABELS = re.compile(r" \[[^\]]*, [^\]]*\]$")  # the trailing "[sig-x, Conformance]" of a spec name

# Specs that cannot pass on fake nodes, by a pattern of their name, with why. In each, the tenant
# API server must call a server that runs in one of the spec's pods (through a Service). Locally
# pods are KWOK's: they get an IP and turn Ready, but no process ever listens there (and the
# tenant's `cluster` egress reaches only its virtual nodes: vn_agent refuses a tunnel to a pod IP).
NEEDS_RUNNING_POD: list[tuple[str, re.Pattern[str], str]] = [
    (
        "admission webhooks",
        re.compile(r"\] AdmissionWebhook "),
        "each spec first deploys the sample webhook server and waits until the API server's calls "
        "to it are answered (timed out waiting for the webhook configuration to be ready)",
    ),
    (
        "aggregated API server",
        re.compile(r"\] Aggregator "),
        "the sample-apiserver pod (with its etcd container) must serve wardle.example.com/v1alpha1 "
        "behind an APIService, which never becomes Available",
    ),
    (
        "CRD conversion webhooks",
        re.compile(r"\] (CustomResourceConversionWebhook|CustomResourceFieldSelectors) "),
        "the CRD's versions are converted by a webhook pod behind a Service (the field-selector "
        "spec's CRD too); the setup waits for a conversion that never succeeds",
    ),
]
WHY_HEADING = "need a container that really runs (KWOK pods never run one)"


@dataclass
class Result:
    passed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # skipped at run time, with reason
    failed: list[tuple[str, str]] = field(default_factory=list)  # name, first line of the message
    not_selected: int = 0


def parse_junit(path: Path) -> Result:
    res = Result()
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        spec = LABELS.sub("", name.removeprefix("[It] "))
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            text = bad.get("message") or bad.text or str(case.get("status"))
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
            res.failed.append((spec, first.removeprefix("[FAILED] ")))
        elif not name.startswith("[It] "):
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


def needs_running_pod(spec: str) -> str | None:
    return next((group for group, pat, _ in NEEDS_RUNNING_POD if pat.search(spec)), None)


def summarize(res: Result) -> tuple[list[str], bool]:
    """The summary lines, and whether every failure is one that needs a running container."""
    lines = [f"{len(res.passed)} passed, {len(res.failed)} failed, {len(res.skipped)} skipped"]
    known: dict[str, list[tuple[str, str]]] = {}
    other: list[tuple[str, str]] = []
    for spec, msg in res.failed:
        group = needs_running_pod(spec)
        (known.setdefault(group, []) if group else other).append((spec, msg))
    if other:
        lines += ["", f"failed ({len(other)}):"]
        for spec, msg in other:
            lines += [f"  {spec}", f"      {msg}"]
    if known:
        lines += ["", f"{WHY_HEADING} ({sum(map(len, known.values()))}):"]
        for group, _, why in NEEDS_RUNNING_POD:
            if group in known:
                lines.append(f"  {group} ({len(known[group])}): {why}")
                lines += [f"    {spec}" for spec, _ in known[group]]
                lines += [f"    message: {msg}" for msg in dict.fromkeys(msg for _, msg in known[group])]
    if res.skipped:
        lines += ["", f"skipped ({len(res.skipped)}):"]
        lines += [f"  {spec}: {why}" for spec, why in res.skipped]
    return lines, not other


def run_streaming(cmd: list[str], log: Path, t0: float) -> int:
    """Run the specs with their output into `log`, printing one line per finished spec.

    Each spec's report follows a rule of dashes: in one process its name first and the `• [state]
    [N seconds]` line after its steps; in parallel, that line first and the name right after it."""
    total, done = "?", 0
    name: str | None = None
    end: re.Match[str] | None = None
    prev = ""
    with (
        log.open("w") as f,
        subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        ) as p,
    ):
        assert p.stdout is not None
        for line in p.stdout:
            f.write(line)
            if m := re.match(r"Will run (\d+) of", line):
                total = m[1]
            if line.startswith("-----"):
                name, end = None, None
            elif prev.startswith("-----") and (m := SPEC_END.match(line)):
                end = m
            elif (prev.startswith("-----") or (end and SPEC_END.match(prev))) and line.startswith("["):
                name = LABELS.sub("", line.strip())
            elif name and (m := SPEC_END.search(line)):
                end = m
            if name and end:
                done += 1
                mins, secs = divmod(int(time.monotonic() - t0), 60)
                state = end[1] or "PASSED"
                print(
                    f"[{mins:3d}:{secs:02d}] {done}/{total} {state} {name} ({float(end[2]):.0f}s)", flush=True
                )
                name, end = None, None
            prev = line
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
    ap.add_argument(
        "--bin", type=Path, default=None, help="where e2e.test and ginkgo are (default: the cache)"
    )
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
