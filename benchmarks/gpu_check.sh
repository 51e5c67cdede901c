#!/usr/bin/env bash
# The GPU check, run on a lent GPU machine from the repository root, after the parts that
# benchmarks/gpu_wheels.sh prepared were carried there (it prints the calls). Writes to
# $OUT (default /tmp/gpu-check):
#   gpu_check.log          everything printed, warnings included
#   nvidia-smi.txt         the GPU and its driver
#   gpu_infer.json         inference alone on CPU, CUDA (as pipelines run it, and with
#                          tensors kept on the GPU), TensorRT fp32 and fp16, batch 1
#                          and 8; decoding with and without hwaccel: cuda
#                          (benchmarks/gpu_infer.py)
#   gpu_path.json          frames kept on the GPU (benchmarks/gpu_path.py): the GPU path
#                          checked against the CPU path, the decoders' ceiling, inference
#                          alone, the offline pipeline, the most live 1080p30 cameras in
#                          one process and in two shards
#   efficiency-*.json, gpu_limits.json   with GPU_CHECK_ALL=1 only: the CPU-prepared path
#                          of the earlier runs (benchmarks.efficiency, gpu_limits)
# Planned to stay inside one 10-minute call: about 5 s to unpack and install, 40 s for
# gpu_infer, and gpu_path bounded at 420 s (its live search stops early when it runs out).
# Exit 3: a part is missing (carry it again); exit 1: the GPU path's check failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
GPU=.gpu
MODEL=/tmp/bundle/assets/yolov8n.onnx
CLIP=/tmp/bundle/assets/one-by-one-person-detection.mp4
CLIP_1080=/tmp/bundle/assets/person-1080p30.mp4  # made by gpu_wheels.sh (gpu_path clip)
section() { echo; echo "== $* ($(date +%T))"; }

section "parts"
if ! (cd "$GPU/parts" && sha256sum --quiet -c SHA256SUMS); then
    echo "missing or damaged parts (above): carry them again, then run this again"
    exit 3
fi
rm -rf /tmp/bundle /tmp/site
cat "$GPU"/parts/bundle.tar.part* | tar -C /tmp -xf - || exit 4
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site /tmp/bundle/wheels/*.whl || exit 4
# onnxruntime-gpu goes before the image's CPU onnxruntime; the repository is importable.
export PYTHONPATH=/tmp/site:$PWD
mkdir -p /tmp/redis-root
for deb in /tmp/bundle/debs/*.deb; do dpkg -x "$deb" /tmp/redis-root; done
# CUDA 13 and cuDNN 9 come with the image's Python packages (nvidia-*), which are not on
# the loader's path; ONNX Runtime's CUDA provider links them by name.
nvidia_libs=$(python3 -c '
import glob, os, site
dirs = {os.path.dirname(p) for base in site.getsitepackages()
        for p in glob.glob(os.path.join(base, "nvidia", "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(dirs)))')
export LD_LIBRARY_PATH=$nvidia_libs:/tmp/redis-root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=/tmp/redis-root/usr/bin:$PATH
export XDG_CACHE_HOME=/tmp/cache  # TensorRT engines: a fresh cache, shared by the runs

section "machine"
nvidia-smi | tee "$OUT/nvidia-smi.txt"
python3 -c 'import onnxruntime as o, av; print("onnxruntime", o.__version__, o.get_available_providers()); print("av", av.__version__, av.codec.hwaccel.hwdevices_available())'
python3 -c 'from streamer.device.arrays import why_no_cuda; print("CuPy on GPU 0:", why_no_cuda(0) or "usable")'
redis-server --version

section "inference alone and decoding"
timeout 300 python3 -m benchmarks.gpu_infer --model "$MODEL" --clip "$CLIP" \
    --batches 1 8 --seconds 3 --json "$OUT/gpu_infer.json"
echo "gpu_infer exit $?"

section "frames kept on the GPU"
timeout 420 python3 -m benchmarks.gpu_path run --model "$MODEL" --clip "$CLIP_1080" \
    --work-dir /tmp/gpu-path --live-seconds 15 --live-start 32 --json "$OUT/gpu_path.json"
path_exit=$?
echo "gpu_path exit $path_exit"

if [[ ${GPU_CHECK_ALL:-0} == 1 ]]; then
    section "efficiency: cuda"
    timeout 300 python3 -m benchmarks.efficiency --model "$MODEL" --clip "$CLIP" \
        --frames 300 --batch 8 --most-sources 8 --work-dir /tmp/efficiency \
        --live-seconds 8 --overload-seconds 15 --providers cuda --json "$OUT/efficiency-cuda.json"
    section "what limits the pipeline"
    timeout 240 python3 -m benchmarks.gpu_limits --model "$MODEL" --clip "$CLIP" \
        --providers cuda --work-dir /tmp/efficiency --json "$OUT/gpu_limits.json"
fi
exit $((path_exit == 1 ? 1 : 0))
