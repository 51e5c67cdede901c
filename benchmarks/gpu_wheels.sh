#!/usr/bin/env bash
# Prepares, here (PyPI and Debian reachable), what benchmarks/gpu_check.sh needs on a lent
# GPU machine that reaches nothing: wheels, redis-server, the model and the clip, in .gpu/
# (ignored by git). Nothing of it goes into the repository.
#
# The GPU machine (one H200) runs Python 3.12 with CUDA 13, cuDNN 9, numpy, OpenCV, SciPy,
# PyYAML, click and rich already installed, so it needs: onnxruntime-gpu 1.31.1 (built for
# CUDA 13 and cuDNN 9; 256 MB), CuPy for CUDA 13 with its NVRTC (frames prepared on the
# GPU; 160 MB), and streamer's own dependencies that the image lacks.
# TensorRT is not among them: onnxruntime-gpu 1.31's TensorRT provider links
# libnvinfer.so.10 (TensorRT 10 for CUDA 13, tensorrt-cu13-libs 10.x), and PyPI holds only
# placeholders of it that download the real wheel from pypi.nvidia.com, which a machine
# reaching only the package registries cannot. Wheels obtained elsewhere go in with
# TENSORRT_WHEELS=folder; without them, the TensorRT runs fall back, with one warning
# naming the missing library.
#
# A device call carries at most 64 MiB, the working tree (3 MiB) included, so the wheels,
# the model and the clip travel as one tar cut into equal parts of at most PART_MIB
# (default 58) MiB: six parts today. One part a call, each call within 30 s of the last,
# while the machine stays warm: carried files stay there until it is given back. The last
# call carries the last part and .gpu/parts/SHA256SUMS and runs benchmarks/gpu_check.sh,
# which checks every part and names any that must be carried again.
#
#   benchmarks/gpu_wheels.sh      # then follow the plan it prints
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
ASSETS=${STREAMER_ASSETS:-../shared/assets}
PART_MIB=${PART_MIB:-58}
GPU=.gpu

rm -rf "$GPU/bundle" "$GPU/parts"
mkdir -p "$GPU/bundle/wheels" "$GPU/bundle/debs" "$GPU/bundle/assets" "$GPU/parts"

# The exact wheels, for CPython 3.12 on x86-64 Linux (the GPU machine), whatever Python
# runs here; --no-deps: each one that the image lacks is named.
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$GPU/bundle/wheels" \
    onnxruntime-gpu==1.31.1 \
    av==18.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
    typing-inspection==0.4.5 typing-extensions==4.16.0 orjson==3.13.0 redis==8.1.0 \
    cupy-cuda13x==14.2.0 cuda-pathfinder==1.9.1 nvidia-cuda-nvrtc==13.0.88
if [[ -n ${TENSORRT_WHEELS:-} ]]; then
    cp "$TENSORRT_WHEELS"/*.whl "$GPU/bundle/wheels/"
fi

# redis-server and the libraries it needs beyond a base Ubuntu, for the pipeline runs of
# benchmarks.efficiency (Debian 12 packages; run `apt-get update` first if this fails).
(cd "$GPU/bundle/debs" && apt-get download redis-tools redis-server libjemalloc2 liblzf1 \
    liblua5.1-0 lua-bitop lua-cjson)

cp "$ASSETS/models/yolov8n.onnx" "$ASSETS/videos/one-by-one-person-detection.mp4" \
    "$GPU/bundle/assets/"
# The 1080p30 camera clip of benchmarks/gpu_path.py, made here (a minute or two of CPU).
"$PY" -m benchmarks.gpu_path clip --src "$ASSETS/videos/one-by-one-person-detection.mp4" \
    --dst "$GPU/bundle/assets/person-1080p30.mp4"

tar -C "$GPU" -cf "$GPU/bundle.tar" bundle
bytes=$(stat -c %s "$GPU/bundle.tar")
count=$(((bytes + PART_MIB * 1048576 - 1) / (PART_MIB * 1048576)))
split -n "$count" -d -a 2 "$GPU/bundle.tar" "$GPU/parts/bundle.tar.part"
rm -rf "$GPU/bundle.tar" "$GPU/bundle"
(cd "$GPU/parts" && sha256sum bundle.tar.part* >SHA256SUMS)

parts=("$GPU"/parts/bundle.tar.part*)
last=${parts[-1]}
echo
echo "Device calls (each within 30 s of the last, so that the machine stays warm):"
for part in "${parts[@]::${#parts[@]}-1}"; do
    echo "  run  carry=[\"$part\"]  command='ls -l $GPU/parts'  timeout_s=60"
done
echo "  run  carry=[\"$last\", \"$GPU/parts/SHA256SUMS\"]" \
    "command='bash benchmarks/gpu_check.sh'  timeout_s=600"
echo "Each call carries at most $(du -m "$last" | cut -f1) MiB" \
    "plus the working tree ($(git ls-files -z | du -cm --files0-from=- | tail -1 | cut -f1) MiB);" \
    "the limit is 64 MiB."
