"""`make conformance`'s report: Ginkgo's output and JUnit read, failures counted in their groups."""

from __future__ import annotations

from pathlib import Path

from tispacectl import conformance as c

SERIAL = """\
Will run 2 of 7579 specs
------------------------------
[sig-api-machinery] Namespaces should patch [Conformance] [sig-api-machinery, Conformance]
k8s.io/kubernetes@v1.36.3/test/e2e/apimachinery/namespace.go:270
  STEP: Creating a kubernetes client
• [0.512 seconds]
------------------------------
[sig-node] Pods should be updated [NodeConformance] [Conformance] [sig-node, NodeConformance, Conformance]
  STEP: creating the pod
  [FAILED] Timed out after 300.000s.
• [FAILED] [302.104 seconds]
------------------------------
"""

PARALLEL = """\
Running in parallel across 3 processes
------------------------------
[SynchronizedBeforeSuite] PASSED [0.025 seconds]
[SynchronizedBeforeSuite]
------------------------------
• [0.103 seconds]
[sig-api-machinery] Namespaces should finalize [Conformance] [sig-api-machinery, Conformance]
k8s.io/kubernetes@v1.36.3/test/e2e/apimachinery/namespace.go:404
------------------------------
• [PANICKED] [2.157 seconds]
[sig-node] Pod InPlace Resize [It] resize via replace [Conformance] [sig-node, Conformance]
------------------------------
"""


def test_finished_specs_are_read_from_serial_and_parallel_output() -> None:
    assert list(c.finished_specs(SERIAL.splitlines())) == [
        c.Finished("PASSED", "[sig-api-machinery] Namespaces should patch [Conformance]", 0.512),
        c.Finished("FAILED", "[sig-node] Pods should be updated [NodeConformance] [Conformance]", 302.104),
    ]
    assert list(c.finished_specs(PARALLEL.splitlines())) == [  # suite nodes are not specs
        c.Finished("PASSED", "[sig-api-machinery] Namespaces should finalize [Conformance]", 0.103),
        c.Finished(
            "PANICKED",
            "[sig-node] Pod InPlace Resize [It] resize via replace [Conformance]",
            2.157,
        ),
    ]


JUNIT = """\
<testsuites><testsuite>
<testcase name="[SynchronizedBeforeSuite]" status="passed"></testcase>
<testcase name="[It] [sig-api-machinery] Namespaces should patch [Conformance] [sig-api-machinery, Conformance]" status="passed"></testcase>
<testcase name="[It] [sig-storage] ConfigMap in volume [NodeConformance] [sig-storage, NodeConformance, Conformance]" status="failed">
  <failure message="[FAILED] expected pod &quot;p&quot; success: Timed out after 300.000s.&#xA;more"></failure>
</testcase>
<testcase name="[It] [sig-apps] StatefulSet Should recreate evicted statefulset [sig-apps, Conformance]" status="failed">
  <failure message="[FAILED] Pod test-pod did not start running: hostPort 21017 is not allowed"></failure>
</testcase>
<testcase name="[It] [sig-api-machinery] AdmissionWebhook should mutate pod [sig-api-machinery, Conformance]" status="failed">
  <failure message="[FAILED] waiting for webhook configuration to be ready: timed out"></failure>
</testcase>
<testcase name="[It] [sig-network] API Server should have Endpoints [sig-network, Conformance]" status="failed">
  <error message="endpoints &quot;kubernetes&quot; not found"></error>
</testcase>
<testcase name="[It] [sig-api-machinery] Something else [sig-api-machinery, Conformance]" status="failed">
  <failure message="[FAILED] unexpected error: the server refused"></failure>
</testcase>
<testcase name="[It] [sig-node] RuntimeClass should schedule a Pod [NodeConformance] [sig-node, NodeConformance, Conformance]" status="failed">
  <failure message="[FAILED] Failed to schedule Pod with the RuntimeClass: Timed out after 80.001s."></failure>
  <system-err>event for test-runtimeclass: {tispace-syncer } SyncRejected: the super cluster refused Pod</system-err>
</testcase>
<testcase name="[It] [sig-network] HostPort validates no conflict [sig-network, Conformance]" status="failed">
  <failure message="[FAILED] wait for pod pod1 timeout"></failure>
  <system-err>event for pod1: {tispace-syncer } HostPortForbidden: container 'agnhost': hostPort 54323 is not allowed</system-err>
</testcase>
<testcase name="[It] [sig-storage] Some volume [sig-storage, Slow]" status="skipped">
  <skipped message="skipped"></skipped>
</testcase>
<testcase name="[It] [sig-node] Two nodes [sig-node, Conformance]" status="skipped">
  <skipped message="skipped - only one node"></skipped>
</testcase>
</testsuite></testsuites>
"""


def test_junit_failures_fall_into_their_groups_and_the_rest_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    res = c.parse_junit(path)
    assert res.passed == ["[sig-api-machinery] Namespaces should patch [Conformance]"]
    assert res.not_selected == 1
    assert res.skipped == [("[sig-node] Two nodes", "only one node")]
    groups = {f.spec.split("] ")[1].split(" ")[0]: c.group_of(f) for f in res.failed}
    assert groups["ConfigMap"] is not None and groups["ConfigMap"].label == "NodeConformance"
    assert groups["StatefulSet"] is not None and groups["StatefulSet"].name == "refused by tenant isolation"
    assert groups["AdmissionWebhook"] is not None and "webhook" in groups["AdmissionWebhook"].name
    assert groups["API"] is None and groups["Something"] is None  # no evidence: listed, never guessed
    assert groups["RuntimeClass"] is None  # the super cluster refused the pod: a finding, whatever its sig
    assert groups["HostPort"] is not None and groups["HostPort"].name == "refused by tenant isolation"
    lines, all_known = c.summarize(res)
    assert not all_known
    assert lines[0] == (
        "1 passed, 7 failed, 1 skipped; 1 of the 4 that do not need what this stack cannot give"
    )
    assert lines[1:9] == [
        "",
        "failed (3):",
        "  [sig-network] API Server should have Endpoints",
        '      endpoints "kubernetes" not found',
        "  [sig-api-machinery] Something else",
        "      unexpected error: the server refused",
        "  [sig-node] RuntimeClass should schedule a Pod [NodeConformance]",
        "      Failed to schedule Pod with the RuntimeClass: Timed out after 80.001s.",
    ]
    assert any(line.startswith("refused by tenant isolation (2): ") for line in lines)
