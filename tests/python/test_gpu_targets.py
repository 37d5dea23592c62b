"""scripts/gpu_targets.py, the GPU targets read off a gpu_check.sh output folder: run on the H100
results stored in benchmarks/results (as that folder's files), on an empty folder, and on rows
that meet their targets. Needs neither a GPU nor the built longhaul module."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_targets.py"
RESULTS = ROOT / "benchmarks" / "results"


def targets(folder):
    r = subprocess.run([sys.executable, str(SCRIPT), str(folder)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_h100_results_give_their_ratios_and_verdicts(tmp_path):
    shutil.copy(RESULTS / "gpu_h100_kernel.txt", tmp_path / "kernel_cuda.txt")
    shutil.copy(RESULTS / "gpu_h100_cp_emulation.txt", tmp_path / "cp_gpu.txt")
    shutil.copy(RESULTS / "gpu_h100_layer.txt", tmp_path / "layer_gpu.txt")
    out = targets(tmp_path)
    assert "documents T=16384 H=16/16 bf16 fwd: 0.289x (target >= 0.8: NOT met)" in out
    assert "causal_window T=16384 H=16/16 fp32 fwd: 0.014x (target >= 0.5: NOT met)" in out
    assert "ring zigzag T=131072 P=4: 0.582 (target >= 0.85: NOT met)" in out
    assert "ring zigzag T=131072 P=8: 0.508 (target >= 0.85: NOT met)" in out
    assert "WRONG" not in out  # every stored row's max_rel_err is about 1e-3
    assert "ring T=131072 P=4: 0.587 (target >= 0.85: NOT met); wrong 0" in out
    # Only T = 128K rows carry the CP target; the 32K rows are listed without one.
    assert "ring zigzag T=32768 P=4: 0.416\n" in out
    assert "train_gpu.txt: missing" in out


def test_an_empty_folder_says_every_section_is_missing(tmp_path):
    out = targets(tmp_path)
    for name in ("kernel_cuda.txt", "cp_gpu.txt", "layer_gpu.txt", "train_gpu.txt"):
        assert f"## {name}: missing" in out


def test_rows_that_meet_their_targets(tmp_path):
    (tmp_path / "kernel_cuda.txt").write_text(
        "# causal_window vs causal, cuda T=16384 H=16/16 D=128 bf16 fwd: 4.6e+05 vs 5.66e+05 GFLOP/s"
        " = 0.81x the causal rate\n"
        "# causal_window vs causal, cuda T=16384 H=16/16 D=128 bf16 fwd+bwd: 3.4e+05 vs 4.9e+05 GFLOP/s"
        " = 0.69x the causal rate\n"
        "# the exact chunked path alone\n"
        "# causal_window vs causal, exact_cuda T=16384 H=16/16 D=128 fp32 fwd: 9e+03 vs 1e+04 GFLOP/s"
        " = 0.9x the causal rate\n")
    (tmp_path / "train_gpu.txt").write_text(
        "# longhaul train --device cuda --dtype bf16, sequences of 2^13 tokens\n"
        "trained 30 steps: 123456 tokens/s (after the first step, a warm-up); checkpoint /tmp/x\n")
    (tmp_path / "layer_gpu.txt").write_text("timeout: the layer bench was stopped\n")
    out = targets(tmp_path)
    assert "[ragged cuDNN routes (default)] causal_window T=16384 H=16/16 bf16 fwd: 0.810x " \
           "(target >= 0.8: met)" in out
    assert "bf16 fwd+bwd: 0.690x (target >= 0.7: NOT met)" in out
    # The exact path's own window/causal ratio is not the float32 target (that is the cuda backend's).
    assert "causal_window T=16384 H=16/16 fp32 fwd: 0.900x (exact_cuda, against its own causal rate: no verdict)" in out
    assert "fp32 fwd: 0.900x (target" not in out
    assert "123456 tokens/s (after the first step" in out
    assert "## cp_gpu.txt: missing" in out
    assert "- no such rows in layer_gpu.txt (its section failed?)" in out


def test_a_cp_row_far_from_the_single_kernel_gets_no_verdict(tmp_path):
    (tmp_path / "cp_gpu.txt").write_text(
        "strategy  layout    mask       T  P   H  H_kv    D  dtype  aggregate_over_single  max_rel_err\n"
        "    ring  zigzag  causal  131072  4  16    16  128   bf16                 0.9100       0.3000\n"
        "    ring  zigzag  causal  131072  8  16    16  128   bf16                 0.9000          nan\n")
    out = targets(tmp_path)
    assert "ring zigzag T=131072 P=4: 0.910 (WRONG: max_rel_err 0.3 > 0.02, no verdict)" in out
    assert "ring zigzag T=131072 P=8: 0.900 (WRONG: max_rel_err nan > 0.02, no verdict)" in out


def test_a_documents_row_of_one_document_gets_no_verdict(tmp_path):
    """Long documents cut to a short T leave one document: causal's area, whatever its ratio."""
    (tmp_path / "kernel_cuda.txt").write_text(
        "# causal_documents vs causal, cuda T=16384 H=16/16 D=128 bf16 fwd: 5.6e+05 vs 5.66e+05 GFLOP/s"
        " = 0.99x the causal rate (one document at this T: not a documents measurement)\n")
    out = targets(tmp_path)
    assert "causal_documents T=16384 H=16/16 bf16 fwd: 0.990x (one document at this T: no verdict)" in out
    assert "met" not in out.split("## cp_gpu.txt")[0]


def test_sections_are_named_by_gpu_check_not_by_the_bench(tmp_path):
    """The bench's own header and progress lines (stderr, in the same file) start with '# ' too:
    they must not rename the section gpu_check.sh named."""
    ratio = ("# documents vs causal, cuda T=16384 H=16/16 D=128 bf16 fwd: 4.2e+05 vs 5e+05 GFLOP/s"
             " = 0.84x the causal rate\n")
    (tmp_path / "kernel_cuda.txt").write_text(
        "# bench attention, kernel level: threads 16, median of up to 10 runs after 1 warm-up\n"
        "# [kernel 1/4] causal T=16384\n" + ratio +
        "# the same documents on FlashAttention-2 alone (LONGHAUL_CUDA_VARLEN=flash): what ragged cuDNN changes\n"
        "# bench attention, kernel level: threads 16, median of up to 5 runs after 1 warm-up\n"
        "# [kernel 2/4] documents T=16384\n" + ratio.replace("0.84x", "0.75x"))
    out = targets(tmp_path)
    assert "[ragged cuDNN routes (default)] documents T=16384 H=16/16 bf16 fwd: 0.840x (target >= 0.8: met)" in out
    flash_alone = [l for l in out.splitlines() if "0.750x" in l]
    assert len(flash_alone) == 1, out
    assert flash_alone[0].startswith("- [the same documents on FlashAttention-2 alone (LONGHAUL_CUDA_VARLEN=flash)"), out
    assert "bench attention" not in out


def test_cp_rows_with_a_note_of_several_words(tmp_path):
    """bench cp-gpu's last column, the note, names the kernels of the rows' blocks in words."""
    (tmp_path / "cp_gpu.txt").write_text(
        "strategy  layout    mask       T  P   H  H_kv    D  dtype  aggregate_over_single  note\n"
        "  single       -  causal  131072  1  16    16  128   bf16                 1.0000  copy 9 us + 310 GB/s; "
        "route: cudnn_dense x1\n"
        "    ring  zigzag  causal  131072  4  16    16  128   bf16                 0.8712  route q0.k1: cudnn_pieces "
        "x1; q0.k0: cudnn_pieces x1, cudnn_pieces x2\n")
    out = targets(tmp_path)
    assert "ring zigzag T=131072 P=4: 0.871 (target >= 0.85: met)" in out, out


def test_targets_no_row_measured_are_listed_and_counted(tmp_path):
    """A section stopped at its limit leaves targets without a row: they are named, not dropped."""
    (tmp_path / "kernel_cuda.txt").write_text(
        "# causal_window vs causal, cuda T=16384 H=16/16 D=128 bf16 fwd: 4.6e+05 vs 5.66e+05 GFLOP/s"
        " = 0.81x the causal rate\n"
        "# causal_documents vs causal, cuda T=16384 H=16/16 D=128 bf16 fwd: 5.6e+05 vs 5.66e+05 GFLOP/s"
        " = 0.99x the causal rate (one document at this T: not a documents measurement)\n")
    (tmp_path / "cp_gpu.txt").write_text(
        "strategy  layout    mask       T  P   H  H_kv    D  dtype  aggregate_over_single  max_rel_err\n"
        "    ring  zigzag  causal  131072  4  16    16  128   bf16                 0.9100       0.0010\n"
        "    ring  zigzag  causal  131072  8  16    16  128   bf16                 0.9000          nan\n")
    out = targets(tmp_path)
    missing = out.split("## Targets no row measured")[1]
    assert "kernel causal_window T=16384 H=16/16 bf16 fwd (" not in missing  # measured above
    assert "kernel causal_window T=16384 H=16/16 bf16 fwd+bwd (target >= 0.7): not measured" in missing
    assert "kernel causal_documents T=16384 H=16/16 bf16 fwd (target >= 0.8): not measured" in missing  # one document
    assert "kernel causal_window T=16384 H=16/16 fp32 fwd (target >= 0.5): not measured" in missing
    assert "cp-gpu ring zigzag T=131072 P=4" not in missing
    assert "cp-gpu ring zigzag T=131072 P=8 (target >= 0.85): not measured" in missing  # its row is wrong
    assert "layer ring T=131072 P=4 (target >= 0.85): not measured" in missing
    assert "train --device cuda tokens/s: not measured" in missing
    assert out.rstrip().endswith("## 2 target lines met, 0 NOT met, 20 targets not measured"), out


def test_every_target_measured_leaves_no_unmeasured_list(tmp_path):
    kernel = []
    for mask in ("causal_documents", "causal_window"):
        for t, h, hkv in ((16384, 16, 16), (16384, 64, 8), (131072, 16, 16), (131072, 64, 8)):
            for pas in ("fwd", "fwd+bwd"):
                kernel.append(f"# {mask} vs causal, cuda T={t} H={h}/{hkv} D=128 bf16 {pas}: 1 vs 1 GFLOP/s"
                              " = 0.9x the causal rate")
    for pas in ("fwd", "fwd+bwd"):
        kernel.append(f"# causal_window vs causal, cuda T=16384 H=16/16 D=128 fp32 {pas}: 1 vs 2 GFLOP/s"
                      " = 0.4x the causal rate")
    (tmp_path / "kernel_cuda.txt").write_text("\n".join(kernel) + "\n")
    (tmp_path / "cp_gpu.txt").write_text(
        "strategy  layout    mask       T  P   H  H_kv    D  dtype  aggregate_over_single  max_rel_err\n"
        "    ring  zigzag  causal  131072  4  16    16  128   bf16                 0.9100       0.0010\n"
        "    ring  zigzag  causal  131072  8  16    16  128   bf16                 0.8000       0.0010\n")
    (tmp_path / "layer_gpu.txt").write_text(
        "strategy  layout    mask       T  P   H  H_kv    D   dim  dtype  tokens_per_s  wrong\n"
        "  single       -  causal  131072  1  16    16  128  2048   bf16      100000.0      0\n"
        "    ring  zigzag  causal  131072  4  16    16  128  2048   bf16       90000.0      0\n")
    (tmp_path / "train_gpu.txt").write_text(
        "trained 30 steps: 123456 tokens/s (after the first step, a warm-up); checkpoint /tmp/x\n")
    out = targets(tmp_path)
    assert "## Targets no row measured" not in out
    assert out.rstrip().endswith("## 18 target lines met, 3 NOT met, 0 targets not measured"), out


def test_a_forced_route_says_what_it_would_decide_without_counting(tmp_path):
    """A section that forces a route on or off (its name sets LONGHAUL_CUDA_...) measures that
    route, not the default one: its verdicts are shown, not counted, and measure no target."""
    (tmp_path / "kernel_cuda.txt").write_text(
        "# ---- cuDNN band route (LONGHAUL_CUDA_BAND=cudnn) ----\n"
        "# causal_window vs causal, cuda T=16384 H=16/16 D=128 bf16 fwd: 4.6e+05 vs 5.66e+05 GFLOP/s"
        " = 0.81x the causal rate\n"
        "# LONGHAUL_CUDA_VARLEN=flash\n"
        "# causal_documents vs causal, cuda T=16384 H=16/16 D=128 bf16 fwd: 1e+05 vs 5.66e+05 GFLOP/s"
        " = 0.18x the causal rate\n"
        # gpu_check.sh's own header, longer than the section name shown: the route is past its cut.
        "# causal (the yardstick), the causal window of 1024 and documents (their backward on the band graph), "
        "LONGHAUL_CUDA_BAND=cudnn\n"
        "# causal_window vs causal, cuda T=131072 H=64/8 D=128 bf16 fwd: 1e+05 vs 2e+05 GFLOP/s"
        " = 0.5x the causal rate\n")
    out = targets(tmp_path)
    assert "[cuDNN band route (LONGHAUL_CUDA_BAND=cudnn)] causal_window T=16384 H=16/16 bf16 fwd: 0.810x " \
           "(target >= 0.8: would be met; not the default route)" in out, out
    assert "[LONGHAUL_CUDA_VARLEN=flash] causal_documents T=16384 H=16/16 bf16 fwd: 0.180x " \
           "(target >= 0.8: would NOT be met; not the default route)" in out, out
    assert "causal_window T=131072 H=64/8 bf16 fwd: 0.500x (target >= 0.8: would NOT be met; not the default route)" \
        in out, out
    missing = out.split("## Targets no row measured")[1]
    assert "kernel causal_window T=16384 H=16/16 bf16 fwd (target >= 0.8): not measured" in missing
    assert "kernel causal_window T=131072 H=64/8 bf16 fwd (target >= 0.8): not measured" in missing
    assert out.rstrip().endswith("## 0 target lines met, 0 NOT met, 22 targets not measured"), out


def test_rows_that_are_wrong_or_not_a_number_decide_nothing(tmp_path):
    """What the benches print for a failed check or a NaN: the kernel line's WRONG note, the
    tables' '-' for NaN, a layer row with wrong 1. None of them is a verdict or breaks the parser."""
    (tmp_path / "kernel_cuda.txt").write_text(
        "# causal_window vs causal, cuda T=16384 H=16/16 D=128 bf16 fwd: 4.6e+05 vs 5.66e+05 GFLOP/s"
        " = 0.81x the causal rate (WRONG: 12 wrong elements in this row's check, 0 in causal's)\n"
        "# causal_window vs causal, cuda T=16384 H=16/16 D=128 bf16 fwd+bwd: nan vs 4.9e+05 GFLOP/s"
        " = nanx the causal rate\n"
        "# causal_documents vs causal, cuda T=16384 H=16/16 D=128 bf16 fwd: 5e+05 vs 5.66e+05 GFLOP/s"
        " = 0.88x the causal rate\n")
    (tmp_path / "cp_gpu.txt").write_text(
        "strategy  layout    mask       T  P   H  H_kv    D  dtype  aggregate_over_single  max_rel_err\n"
        "    ring  zigzag  causal  131072  4  16    16  128   bf16                 0.9100            -\n"
        "    ring  zigzag  causal  131072  8  16    16  128   bf16                      -       0.0010\n")
    (tmp_path / "layer_gpu.txt").write_text(
        "strategy  layout    mask       T  P   H  H_kv    D   dim  dtype  tokens_per_s  wrong\n"
        "  single       -  causal  131072  1  16    16  128  2048   bf16      100000.0      0\n"
        "    ring  zigzag  causal  131072  4  16    16  128  2048   bf16       90000.0      1\n")
    out = targets(tmp_path)
    assert "causal_window T=16384 H=16/16 bf16 fwd: 0.810x (WRONG: 12 wrong elements in this row's check, " \
           "0 in causal's: no verdict)" in out, out
    assert "causal_window T=16384 H=16/16 bf16 fwd+bwd: nanx (not a number: no verdict)" in out, out
    # The NaN line does not rename the section: the next row is still the default route's.
    assert "[ragged cuDNN routes (default)] causal_documents T=16384 H=16/16 bf16 fwd: 0.880x " \
           "(target >= 0.8: met)" in out, out
    assert "ring zigzag T=131072 P=4: 0.910 (WRONG: max_rel_err nan > 0.02, no verdict)" in out, out
    assert "ring zigzag T=131072 P=8: nan (not a number: no verdict)" in out, out
    assert "ring T=131072 P=4: 0.900 (WRONG: wrong 1, no verdict)" in out, out
    missing = out.split("## Targets no row measured")[1]
    for target in ("kernel causal_window T=16384 H=16/16 bf16 fwd (", "kernel causal_window T=16384 H=16/16 bf16 fwd+bwd (",
                   "cp-gpu ring zigzag T=131072 P=4 (", "cp-gpu ring zigzag T=131072 P=8 (",
                   "layer ring T=131072 P=4 ("):
        assert target in missing, (target, out)
    assert out.rstrip().endswith("## 1 target lines met, 0 NOT met, 21 targets not measured"), out
