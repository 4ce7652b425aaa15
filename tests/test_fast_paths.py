"""Fast paths: which candidates --best tries, that each runs for real, and the ceiling beside it."""

from dataclasses import replace

import pytest

from benchmarks import frameworks, runner
from benchmarks.cell import CellConfig
from benchmarks.fast_paths import candidates
from benchmarks.frameworks import pytorch as pytorch_adapter
from benchmarks.host import native_bf16
from benchmarks.matrix import SweepError, SweepOptions, plan
from implementations.variants import get_variant


def describe(cell: CellConfig) -> str:
    """How a candidate differs from the plain model: its formulation (split variants) and fast paths."""
    impl = cell.split_impl if get_variant(cell.variant).is_split else ""
    return "+".join(filter(None, [impl, cell.fast_paths()]))


@pytest.fixture
def xeon_launcher(monkeypatch):
    """Whether torch's CPU launcher is installed, as the test says (it is a property of the host)."""

    def set_available(available: bool) -> None:
        monkeypatch.setattr(pytorch_adapter, "xeon_launcher_available", lambda: available)

    return set_available


def test_torch_split_candidates_change_one_thing_each(xeon_launcher):
    xeon_launcher(True)
    base = CellConfig("torch", "cifar100-split", "train", 8, "grouped")
    found = candidates(base, native_bf16=True)
    assert [describe(c) for c in found] == [
        "grouped+fp32",
        "towers+fp32",
        "grouped+channels_last",
        "grouped+compiled",
        "grouped+bf16",
        "grouped+xeon-launch",
    ]
    assert found[0] == base


def test_the_xeon_launch_is_tried_for_one_pytorch_cpu_process_where_torch_has_it(xeon_launcher):
    xeon_launcher(True)
    launched = [c for c in candidates(CellConfig("torch", "cifar100-single", "infer", 8), False) if c.xeon_launch]
    assert len(launched) == 1 and "[xeon-launch]" in launched[0].label()
    for elsewhere in (
        CellConfig("torch", "cifar100-single", "infer", 8, gpus=1),
        CellConfig("torch", "cifar100-single", "train", 8, simulate_devices=2),
        CellConfig("torch", "cifar100-single", "train", 8, nodes=2),
        CellConfig("keras", "cifar100-single", "infer", 8),
    ):
        assert not any(c.xeon_launch for c in candidates(elsewhere, True)), elsewhere.label()
    xeon_launcher(False)
    assert not any(c.xeon_launch for c in candidates(CellConfig("torch", "cifar100-single", "infer", 8), False))


def test_the_xeon_launch_option_is_refused_where_it_cannot_apply(xeon_launcher):
    xeon_launcher(True)
    with pytest.raises(SweepError, match="keras does not take --xeon-launch"):
        plan(SweepOptions(xeon_launch=True, quick=True))
    with pytest.raises(SweepError, match="does not go with --gpus"):
        plan(SweepOptions(xeon_launch=True, frameworks=["torch"], gpus=1, quick=True))
    xeon_launcher(False)
    with pytest.raises(SweepError, match="which this machine lacks"):
        plan(SweepOptions(xeon_launch=True, frameworks=["torch"], quick=True))


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


@pytest.mark.skipif(not pytorch_adapter.xeon_launcher_available(), reason="this torch has no CPU launcher")
def test_a_cell_runs_under_the_xeon_launcher_and_records_what_it_set():
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


def test_the_host_probe_can_be_overridden(monkeypatch):
    monkeypatch.setenv("ALEXNET_BENCH_NATIVE_BF16", "1")
    assert native_bf16() is True
    monkeypatch.setenv("ALEXNET_BENCH_NATIVE_BF16", "0")
    assert native_bf16() is False


def test_best_plan_and_bad_fast_path_options():
    cells = plan(SweepOptions(quick=True, best=True, frameworks=["torch"], modes=["infer"]))
    assert len(cells) == len(set(cells)) and {c.compiled for c in cells} == {False, True}
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
def test_fast_path_cells_run_and_carry_their_ceiling(cell):
    result = runner.run_worker(cell, timeout_s=300)
    assert result["status"] == "ok", result.get("traceback") or result.get("error")
    metrics = result["metrics"]
    assert metrics["ceiling_flops_per_s"] > 1e9 and metrics["ceiling_dtype"] == "float32"
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
