"""Shared machinery of the speed benchmarks: options, the machine's matmul peak, timing, the table.

Options (``python -m pytest benchmarks --help`` lists them under "segkit benchmarks"):

- ``--bench-image-size`` (default 256) and ``--bench-batch-size`` (default 8): the input of every
  model benchmark;
- ``--bench-models``: comma-separated registered model names (default: every registered model);
- ``--bench-rounds`` (default 3): timed rounds per variant, after one untimed warm-up round;
- ``--bench-device``: ``auto`` (CUDA when present, else the CPU), ``cpu`` or ``cuda``.

Every timed variant becomes a row of the table printed at the end of the session; the figures also
go into each benchmark's ``extra_info`` and so into the JSON that ``--benchmark-autosave`` or
``--benchmark-json`` write.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pytest
import torch

MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}  # square fp32 matmul used to measure the peak, per device
MATMUL_MIN_REPEATS = 5
MATMUL_SECONDS = 3.0


def pytest_addoption(parser):
    group = parser.getgroup("segkit benchmarks")
    group.addoption("--bench-image-size", type=int, default=256, help="input height and width (default 256)")
    group.addoption("--bench-batch-size", type=int, default=8, help="images per batch (default 8)")
    group.addoption(
        "--bench-models",
        default="",
        help="comma-separated model names, each optionally with options as NAME:KEY=VALUE:... "
        "(smp_fpn:encoder=mobilenet_v2) (default: every registered model, plus representative encoders "
        "of segkit-smp's models when it is installed)",
    )
    group.addoption(
        "--bench-rounds", type=int, default=3, help="timed rounds per variant after one warm-up (default 3)"
    )
    group.addoption("--bench-device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto")
    group.addoption(
        "--bench-epoch-rounds",
        type=int,
        default=1,
        help="interleaved rounds of the whole-epoch comparison (default 1: an epoch takes minutes)",
    )
    group.addoption(
        "--bench-compile",
        action="store_true",
        help="also time the torch.compile'd fast path (its first call, the compilation, is reported apart)",
    )


@dataclass(frozen=True)
class BenchSettings:
    image_size: int
    batch_size: int
    rounds: int
    device: torch.device
    compile: bool = False  # also time the torch.compile'd fast path

    def describe(self) -> str:
        return (
            f"{self.image_size}x{self.image_size}, batch {self.batch_size}, {self.device.type}, "
            f"{torch.get_num_threads()} threads, fp32 weights, {self.rounds} interleaved rounds per variant"
        )


def settings_from(config) -> BenchSettings:
    image_size = config.getoption("--bench-image-size")
    batch_size = config.getoption("--bench-batch-size")
    rounds = config.getoption("--bench-rounds")
    for option, value in (
        ("--bench-image-size", image_size),
        ("--bench-batch-size", batch_size),
        ("--bench-rounds", rounds),
    ):
        if value < 1:
            raise pytest.UsageError(f"{option} must be a positive integer, got {value}")
    requested = config.getoption("--bench-device")
    if requested == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--bench-device cuda was asked for, but no CUDA GPU is available")
    device = torch.device(
        "cuda" if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()) else "cpu"
    )
    return BenchSettings(image_size, batch_size, rounds, device, config.getoption("--bench-compile"))


def pytest_configure(config):
    config.segkit_bench_rows = []
    config.segkit_bench_other = []
    config.segkit_bench_lines = []  # free-form result lines (the whole-epoch comparison)


@pytest.fixture(scope="session")
def bench_settings(pytestconfig) -> BenchSettings:
    return settings_from(pytestconfig)


# -- the machine's peak --------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_peak(device: torch.device) -> float:
    """Best achieved GFLOP/s of a large square fp32 matmul (2 n^3 FLOPs) over repeats for about
    ``MATMUL_SECONDS``: the practical peak of this device for dense fp32 arithmetic, measured in
    this process. The best repeat, not the median, because other work on a shared machine only ever
    slows a repeat down."""
    size = MATMUL_SIZE[device.type]
    generator = torch.Generator(device=device).manual_seed(0)
    left = torch.randn(size, size, device=device, generator=generator)
    right = torch.randn(size, size, device=device, generator=generator)
    for _ in range(2):
        left @ right
    synchronize(device)
    best, started, repeats = float("inf"), time.perf_counter(), 0
    while repeats < MATMUL_MIN_REPEATS or (time.perf_counter() - started < MATMUL_SECONDS and repeats < 100):
        start = time.perf_counter()
        left @ right
        synchronize(device)
        best = min(best, time.perf_counter() - start)
        repeats += 1
    return 2 * size**3 / best / 1e9


@pytest.fixture(scope="session")
def matmul_peak_gflops(bench_settings, pytestconfig) -> float:
    peak = measure_matmul_peak(bench_settings.device)
    pytestconfig.segkit_bench_peak = peak
    return peak


# -- memory --------------------------------------------------------------------------------------------


def _current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def process_max_rss_mb() -> float:
    """The process's RSS high-water mark so far (``resource.getrusage``), in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3  # bytes on macOS, KiB on Linux


class PeakMemory:
    """Peak memory one call needs beyond what was allocated before it, in MB.

    CUDA: ``torch.cuda.max_memory_allocated`` during the call minus the allocation before it. CPU:
    the largest resident-set growth seen by a thread polling ``/proc/self/statm`` every 5 ms (the
    activations, gradients and workspaces of the call; weights allocated before it do not count);
    where there is no ``/proc``, the growth of the process's ``getrusage`` high-water mark.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mb = 0.0

    def measure(self, call: Callable[[], object]) -> float:
        if self.device.type == "cuda":
            synchronize(self.device)
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            call()
            synchronize(self.device)
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - before) / 1e6
            return self.peak_mb
        baseline = _current_rss_bytes()
        if baseline is None:
            before = process_max_rss_mb()
            call()
            self.peak_mb = max(0.0, process_max_rss_mb() - before)
            return self.peak_mb
        highest = [baseline]
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.005):
                highest[0] = max(highest[0], _current_rss_bytes() or 0)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            call()
        finally:
            done.set()
            poller.join()
        highest[0] = max(highest[0], _current_rss_bytes() or 0)
        self.peak_mb = (highest[0] - baseline) / 1e6
        return self.peak_mb


# -- timing --------------------------------------------------------------------------------------------


@dataclass
class Variant:
    """One way of running one model: ``call()`` does one batch (inference pass or training step).

    ``flops_per_image`` are the FLOPs of that work for one image (``torch.utils.flop_counter``).
    """

    label: str
    call: Callable[[], object]
    flops_per_image: int
    seconds: list[float] = field(default_factory=list)
    peak_memory_mb: float = 0.0
    first_call_s: float = 0.0  # the untimed warm-up call: kernel selection, or compilation


@dataclass
class Row:
    model: str
    mode: str
    path: str
    median_s: float
    best_s: float
    images_per_second: float  # from the median
    gflops_per_second: float
    peak_fraction: float
    peak_memory_mb: float
    rounds: int
    first_call_s: float


class SpeedRunner:
    """Times the variants of one model and mode interleaved and records their rows (the
    ``speed_runner`` fixture)."""

    def __init__(self, benchmark, config, settings: BenchSettings, peak_gflops: float):
        self.benchmark = benchmark
        self.config = config
        self.settings = settings
        self.peak_gflops = peak_gflops

    def run(self, model: str, mode: str, variants: list[Variant]) -> list[Row]:
        """Time ``variants`` in turn, A B A B ..., so a change in the machine's load hits all alike,
        and return (and record) their rows.

        The first variant is the one pytest-benchmark times (its statistics, JSON and ``compare``);
        the others run, timed by ``time.perf_counter``, in the ``setup`` of each of its rounds. Every
        variant gets one untimed warm-up call first (oneDNN and cuDNN choose and cache kernels on
        first use), during which its peak memory is measured.
        """
        device = self.settings.device

        def timed(variant: Variant) -> Callable[[], None]:
            def run() -> None:
                start = time.perf_counter()
                variant.call()
                synchronize(device)
                variant.seconds.append(time.perf_counter() - start)

            return run

        for variant in variants:
            started = time.perf_counter()
            memory = PeakMemory(device)
            variant.peak_memory_mb = memory.measure(lambda v=variant: (v.call(), synchronize(device)))
            variant.first_call_s = time.perf_counter() - started
        primary, others = timed(variants[0]), [timed(variant) for variant in variants[1:]]

        def setup() -> None:
            for run in others:
                run()

        rounds = self.settings.rounds
        self.benchmark.pedantic(primary, setup=setup, rounds=rounds, warmup_rounds=0, iterations=1)
        return self.record(model, mode, variants)

    def record(self, model: str, mode: str, variants: list[Variant]) -> list[Row]:
        """Each variant's timings as a ``Row``, added to the session table; the first variant's
        figures, and the others' rows, go into the benchmark's ``extra_info``."""
        settings, peak = self.settings, self.peak_gflops
        rows = []
        for variant in variants:
            median = statistics.median(variant.seconds)
            images_per_second = settings.batch_size / median
            gflops = variant.flops_per_image * images_per_second / 1e9
            rows.append(
                Row(
                    model,
                    mode,
                    variant.label,
                    median,
                    min(variant.seconds),
                    images_per_second,
                    gflops,
                    gflops / peak,
                    variant.peak_memory_mb,
                    len(variant.seconds),
                    variant.first_call_s,
                )
            )
        primary = rows[0]
        self.benchmark.extra_info.update(
            model=model,
            mode=mode,
            path=primary.path,
            image_size=settings.image_size,
            batch_size=settings.batch_size,
            device=str(settings.device),
            torch_threads=torch.get_num_threads(),
            images_per_second=round(primary.images_per_second, 3),
            gflops_per_second=round(primary.gflops_per_second, 2),
            flops_per_image=variants[0].flops_per_image,
            matmul_peak_gflops=round(peak, 2),
            fraction_of_matmul_peak=round(primary.peak_fraction, 4),
            peak_memory_mb=round(primary.peak_memory_mb, 1),
            first_call_s=round(primary.first_call_s, 2),
            process_max_rss_mb=round(process_max_rss_mb(), 1),
            interleaved_with={
                row.path: {
                    key: round(value, 4) if isinstance(value, float) else value
                    for key, value in asdict(row).items()
                }
                for row in rows[1:]
            },
        )
        self.config.segkit_bench_rows.extend(rows)
        return rows


@pytest.fixture
def speed_runner(benchmark, pytestconfig, bench_settings, matmul_peak_gflops) -> SpeedRunner:
    return SpeedRunner(benchmark, pytestconfig, bench_settings, matmul_peak_gflops)


@pytest.fixture
def variant():
    """``Variant`` itself, for test modules (benchmarks/ is not a package, so they cannot import it)."""
    return Variant


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Benchmarks outside this package's model suite that report ``images_per_second`` (the data
    pipeline) join the table, so one report shows whether input or compute limits training."""
    yield
    benchmark = getattr(item, "funcargs", {}).get("benchmark")
    if benchmark is None or item.module.__name__.endswith("test_model_speed"):
        return
    if "images_per_second" in benchmark.extra_info:
        item.config.segkit_bench_other.append((item.name, benchmark.extra_info["images_per_second"]))


# -- the table -------------------------------------------------------------------------------------


def format_table(rows: list[Row], peak: float | None, settings: BenchSettings) -> list[str]:
    """The session's rows with, for each, its speed-up over the plain eager path of the same model
    and mode (from the medians, and from the best rounds), and its achieved GFLOP/s over that of the
    reference model timed in the same test."""
    eager = {(row.model, row.mode): row for row in rows if row.path == "eager"}
    reference = {(row.model, row.mode): row for row in rows if row.path == "reference"}
    header = (
        f"{'model':<15} {'mode':<9} {'path':<9} {'img/s':>7} {'GFLOP/s':>8} {'% peak':>7} "
        f"{'mem MB':>7} {'1st s':>6} {'x eager':>8} {'(best)':>7} {'x ref GFLOP/s':>13}"
    )
    lines = [
        f"segkit model speed: {settings.describe()}",
        f"matmul peak: {peak:.1f} GFLOP/s (fp32, measured in this process)" if peak else "",
        header,
        "-" * len(header),
    ]
    order = {"fast": 0, "compiled": 1, "eager": 2, "reference": 3}
    for row in sorted(rows, key=lambda r: (r.mode, r.model, order.get(r.path, 4), r.path)):
        base = eager.get((row.model, row.mode))
        ref = reference.get((row.model, row.mode))
        speedup = f"{base.median_s / row.median_s:8.2f} {base.best_s / row.best_s:7.2f}" if base else " " * 16
        versus = f"{row.gflops_per_second / ref.gflops_per_second:13.2f}" if ref else " " * 13
        lines.append(
            f"{row.model:<15} {row.mode:<9} {row.path:<9} {row.images_per_second:7.2f} "
            f"{row.gflops_per_second:8.1f} {100 * row.peak_fraction:6.1f}% {row.peak_memory_mb:7.0f} "
            f"{row.first_call_s:6.1f} {speedup} {versus}"
        )
    return [line for line in lines if line]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = getattr(config, "segkit_bench_rows", [])
    other = getattr(config, "segkit_bench_other", [])
    lines = getattr(config, "segkit_bench_lines", [])
    if not rows and not other and not lines:
        return
    terminalreporter.section("segkit speed")
    if rows:
        for line in format_table(rows, getattr(config, "segkit_bench_peak", None), settings_from(config)):
            terminalreporter.write_line(line)
        terminalreporter.write_line(
            "fast: segkit.execution.fast_path (channels_last where it pays, BatchNorm folded for inference); "
            "compiled: the same under torch.compile (--bench-compile); eager: plain NCHW fp32; reference: "
            "segmentation_models_pytorch Unet-ResNet34 (channels_last), timed in the same test. img/s and "
            "GFLOP/s from the median round; x eager: eager median time over this row's, (best): the same "
            "from the fastest rounds; x ref: GFLOP/s over the reference row's; 1st s: the untimed warm-up "
            "(kernel selection, or compilation)."
        )
    for name, images_per_second in other:
        terminalreporter.write_line(f"data pipeline {name}: {images_per_second} images/s")
    for line in lines:
        terminalreporter.write_line(line)
