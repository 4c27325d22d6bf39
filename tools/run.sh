#!/usr/bin/env bash
# BlockwiseLR bundle for a machine with PyTorch (and a GPU) but no .NET: ./run.sh <blr arguments>
# Uses BLR_LIBTORCH if set, else the torch/lib of the machine's PyTorch (see docs: Native libtorch backends).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
runtime="${BLR_DOTNET_DIR:-/tmp/blr-dotnet}"
if [ ! -x "$runtime/dotnet" ]; then
  mkdir -p "$runtime" && tar -xJf "$here/dotnet-rt.tar.xz" -C "$runtime"
fi
if [ -z "${BLR_LIBTORCH:-}" ]; then
  BLR_LIBTORCH="$(python3 -c "import torch,os;print(os.path.join(os.path.dirname(torch.__file__),'lib'))")"
fi
export BLR_LIBTORCH DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
exec "$runtime/dotnet" "$here/app/blr.dll" "$@"
