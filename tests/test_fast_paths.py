"""Fast paths: which candidates --best tries, that each runs for real, and the ceiling beside it."""

import importlib.machinery
import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import frameworks, runner
from benchmarks.cell import CellConfig
from benchmarks.fast_paths import candidates
from benchmarks.frameworks import pytorch as pytorch_adapter
from benchmarks.host import Host, native_bf16
from benchmarks.matrix import SweepError, SweepOptions, plan
from implementations.variants import get_variant


def describe(cell: CellConfig) -> str:
    """How a candidate differs from the plain model: its formulation (split variants) and fast paths."""
    impl = cell.split_impl if get_variant(cell.variant).is_split else ""
    return "+".join(filter(None, [impl, cell.fast_paths()]))


@pytest.mark.parametrize("native", [False, True], ids=["emulated-bf16", "native-bf16"])
def test_torch_split_candidates_change_one_thing_each(xeon_launcher, native):
    base = CellConfig("torch", "cifar100-split", "train", 8, "grouped")
    found = candidates(base, native_bf16=native)
    assert [describe(c) for c in found] == [
        "grouped+fp32",
        "towers+fp32",
        "grouped+channels_last",
        "grouped+compiled",
        *(["grouped+bf16"] if native else []),
        *(["grouped+xeon-launch"] if xeon_launcher else []),
    ]
    assert found[0] == base


def test_the_xeon_launch_is_tried_for_one_pytorch_cpu_process_where_torch_has_it(xeon_launcher):
    launched = [c for c in candidates(CellConfig("torch", "cifar100-single", "infer", 8), False) if c.xeon_launch]
    assert len(launched) == (1 if xeon_launcher else 0)
    assert all("[xeon-launch]" in cell.label() for cell in launched)
    for elsewhere in (
        CellConfig("torch", "cifar100-single", "infer", 8, gpus=1),
        CellConfig("torch", "cifar100-single", "train", 8, simulate_devices=2),
        CellConfig("torch", "cifar100-single", "train", 8, nodes=2),
        CellConfig("keras", "cifar100-single", "infer", 8),
    ):
        assert not any(c.xeon_launch for c in candidates(elsewhere, True)), elsewhere.label()


def test_the_xeon_launch_option_is_refused_where_it_cannot_apply(xeon_launcher):
    with pytest.raises(SweepError, match="keras does not take --xeon-launch"):
        plan(SweepOptions(xeon_launch=True, frameworks=["keras"], quick=True))
    with pytest.raises(SweepError, match="does not go with --gpus"):
        plan(SweepOptions(xeon_launch=True, frameworks=["torch"], gpus=1, quick=True))
    lacks = "needs torch.backends.xeon.run_cpu .* and taskset or numactl, which this machine lacks"
    # The default pair: PyTorch takes it where the launcher is here, then Keras is the one refused.
    with pytest.raises(SweepError, match="keras does not take --xeon-launch" if xeon_launcher else lacks):
        plan(SweepOptions(xeon_launch=True, quick=True))
    if xeon_launcher:
        cells = plan(SweepOptions(xeon_launch=True, frameworks=["torch"], quick=True))
        assert cells and all(c.xeon_launch for c in cells)
    else:
        with pytest.raises(SweepError, match=lacks):
            plan(SweepOptions(xeon_launch=True, frameworks=["torch"], quick=True))


def _torch_with_launcher(where: Path) -> importlib.machinery.ModuleSpec:
    """The spec of a torch package installed at ``where``, whose CPU launcher is there when the file is."""
    spec = importlib.machinery.ModuleSpec("torch", None, is_package=True)
    spec.submodule_search_locations = [str(where)]
    return spec


@pytest.mark.parametrize(
    "platform,torch_installed,run_cpu,tools,found",
    [
        ("linux", True, True, {"taskset"}, True),
        ("linux", True, True, {"numactl"}, True),
        ("linux", True, True, set(), False),  # nothing to pin the cores with
        ("linux", True, False, {"taskset", "numactl"}, False),  # a torch without torch.backends.xeon
        ("linux", False, True, {"taskset"}, False),
        ("darwin", True, True, {"taskset"}, False),
    ],
    ids=["taskset", "numactl", "no-pinning-tool", "no-run_cpu", "no-torch", "macos"],
)
def test_the_xeon_launcher_is_found_where_linux_torch_and_a_pinning_tool_have_it(
    monkeypatch, tmp_path, platform, torch_installed, run_cpu, tools, found
):
    if run_cpu:
        (tmp_path / "backends" / "xeon").mkdir(parents=True)
        (tmp_path / "backends" / "xeon" / "run_cpu.py").write_text("")
    real_find_spec = importlib.util.find_spec
    torch_spec = _torch_with_launcher(tmp_path) if torch_installed else None

    def find_spec(name, package=None):
        return torch_spec if name == "torch" else real_find_spec(name, package)

    monkeypatch.setattr(pytorch_adapter.importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(pytorch_adapter.shutil, "which", lambda tool: f"/usr/bin/{tool}" if tool in tools else None)
    monkeypatch.setattr(pytorch_adapter.sys, "platform", platform)
    assert pytorch_adapter.xeon_launcher_available() is found


def test_the_xeon_launch_changes_the_key_only_when_taken():
    plain = CellConfig("torch", "cifar100-single", "infer", 8)
    # Keys of rows written before the option existed: --resume and compare still match them.
    assert plain.key() == "56326b8416fbb30d"
    assert replace(plain, xeon_launch=True).key() != plain.key()


def test_a_worker_lost_under_the_xeon_launcher_is_named():
    cell = CellConfig("torch", "cifar100-single", "infer", 8, xeon_launch=True)
    torch_adapter = frameworks.get("torch")
    log = "E1128 api.py:1002] failed (exitcode: -9) local_rank: 0 (pid: 12695) of binary: taskset"
    assert torch_adapter.explain_exit(cell, log) == (
        "killed",
        "worker killed by SIGKILL under torch.backends.xeon.run_cpu",
    )
    assert torch_adapter.explain_exit(cell, log.replace("-9", "3"))[0] == "crashed"
    assert torch_adapter.explain_exit(replace(cell, xeon_launch=False), log) is None


# Runs the launcher for real, so only where this machine has it; whether it is found, tried or refused is
# tested above on hosts with and without it.
@pytest.mark.skipif(
    not pytorch_adapter.xeon_launcher_available(), reason="needs torch.backends.xeon.run_cpu and taskset or numactl"
)
def test_a_cell_runs_under_the_xeon_launcher_and_records_what_it_set(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the launcher's own choice, not the tests' one thread
    cell = CellConfig("torch", "cifar100-single", "infer", 2, steps=1, warmup=1, xeon_launch=True)
    result = runner.run_worker(cell, timeout_s=300)
    assert result["status"] == "ok", result.get("traceback") or result.get("error")
    settings = result["metrics"]["environment"]["cpu_run_settings"]
    assert settings["thread_variables"]["OMP_NUM_THREADS"] == str(len(settings["affinity"]))


def test_keras_has_no_channels_last_and_model_parallel_keeps_its_towers():
    keras = candidates(CellConfig("keras", "cifar100-single", "infer", 8), native_bf16=False)
    assert [describe(c) for c in keras] == ["fp32", "compiled"]
    parallel = candidates(CellConfig("torch", "cifar100-split", "train", 8, "towers", simulate_devices=2), True)
    assert {c.split_impl for c in parallel} == {"towers"}
    keras_towers = candidates(CellConfig("keras", "cifar100-split", "train", 8, "towers", simulate_devices=2), True)
    assert not any(c.compiled for c in keras_towers), "XLA cannot compile towers on different devices"
    keras_data = candidates(CellConfig("keras", "cifar100-single", "train", 8, simulate_devices=2), False)
    assert any(c.compiled for c in keras_data)


def test_bf16_is_tried_only_where_it_is_native():
    assert native_bf16("flags : fpu sse avx2 avx512f avx512_bf16") is True
    assert native_bf16("flags : fpu sse avx2 fma") is False
    assert native_bf16("Features : fp asimd bf16") is True
    on_gpu = candidates(CellConfig("torch", "cifar100-single", "train", 8, gpus=1), native_bf16=False)
    assert any(c.precision == "bf16" for c in on_gpu)
    on_cpu = CellConfig("torch", "cifar100-single", "train", 8)
    assert not any(c.precision == "bf16" for c in candidates(on_cpu, native_bf16=False))
    assert any(c.precision == "bf16" for c in candidates(on_cpu, native_bf16=True))


@pytest.mark.parametrize("native", [False, True])
def test_the_plan_follows_the_host_it_is_given_not_the_machine_it_runs_on(native):
    options = SweepOptions(frameworks=["keras-torch"], quick=True, best=True, variants=["cifar100-split"])
    cells = plan(replace(options, native_bf16=native))
    expected = {"grouped+fp32", "towers+fp32"} | ({"grouped+bf16"} if native else set())
    assert {describe(c) for c in cells} == expected


def test_the_host_probe_reads_the_override_the_tests_set(host_bf16):
    assert native_bf16() is host_bf16
    assert Host.detect().native_bf16 is host_bf16


@pytest.mark.parametrize(
    "cpuinfo,native",
    [
        ("flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16\n", True),
        ("flags\t\t: fpu sse avx2 fma\n", False),
        (None, False),  # no /proc/cpuinfo (macOS, some containers)
    ],
    ids=["native-bf16", "emulated-bf16", "unreadable"],
)
def test_without_the_override_the_probe_reads_the_cpus_flags(monkeypatch, tmp_path, cpuinfo, native):
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo)
    monkeypatch.delenv("ALEXNET_BENCH_NATIVE_BF16")
    assert native_bf16(cpuinfo_path=path) is native
    monkeypatch.setenv("ALEXNET_BENCH_NATIVE_BF16", "0" if native else "1")
    assert native_bf16(cpuinfo_path=path) is not native  # the override wins over the flags


def test_best_plan_and_bad_fast_path_options(xeon_launcher):
    cells = plan(SweepOptions(quick=True, best=True, frameworks=["torch"], modes=["infer"]))
    assert len(cells) == len(set(cells)) and {c.compiled for c in cells} == {False, True}
    assert {c.xeon_launch for c in cells} == ({False, True} if xeon_launcher else {False})
    with pytest.raises(SweepError, match="unknown precision 'fp8'"):
        plan(SweepOptions(precision="fp8"))
    with pytest.raises(SweepError, match="keras does not take --channels-last"):
        plan(SweepOptions(channels_last=True))


def test_labels_name_the_fast_path():
    cell = CellConfig("torch", "cifar100-split", "infer", 8, precision="bf16", compiled=True)
    assert "[bf16+compiled]" in cell.label()
    assert cell.key() != CellConfig("torch", "cifar100-split", "infer", 8).key()


@pytest.mark.parametrize(
    "cell",
    [
        CellConfig("torch", "cifar100-split", "train", 4, channels_last=True, steps=1, warmup=1),
        CellConfig("keras", "cifar100-split", "infer", 4, "towers", compiled=True, steps=1, warmup=1),
    ],
    ids=["torch-channels_last", "keras-xla"],
)
def test_fast_path_cells_run_and_carry_their_ceiling(cell, monkeypatch):
    monkeypatch.delenv("ALEXNET_BENCH_CEILING_SIZE")  # the real product, as users' runs time it
    result = runner.run_worker(cell, timeout_s=300)
    assert result["status"] == "ok", result.get("traceback") or result.get("error")
    metrics = result["metrics"]
    assert metrics["ceiling_flops_per_s"] > 1e9 and metrics["ceiling_dtype"] == "float32"
    assert metrics["ceiling_matmul_size"] == 2048
    assert 0 < metrics["fraction_of_ceiling"] < 2
    assert metrics["fraction_of_ceiling"] == pytest.approx(
        metrics["achieved_flops_per_s"] / metrics["ceiling_flops_per_s"]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "cell",
    [
        CellConfig("torch", "cifar100-single", "infer", 2, compiled=True, steps=1, warmup=1),
        CellConfig("torch", "cifar100-single", "infer", 2, precision="bf16", steps=1, warmup=1),
        CellConfig("keras", "cifar100-single", "infer", 2, precision="bf16", steps=1, warmup=1),
    ],
    ids=["torch-compile", "torch-bf16", "keras-bf16"],
)
def test_slow_fast_paths_run(cell):
    """torch.compile takes minutes on 2 cores, bf16 is emulated on CPUs without it: kept out of CI."""
    result = runner.run_worker(cell, timeout_s=1200)
    assert result["status"] == "ok", result.get("traceback") or result.get("error")
    if cell.precision == "bf16":
        assert result["metrics"]["ceiling_dtype"] == "bfloat16"
