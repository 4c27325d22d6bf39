using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Distributed;

/// <summary>The address of a tensor's first element (host or device memory), from LibTorchSharp's own
/// THSTensor_data export (TorchSharp keeps its binding internal). The tensor must be contiguous and stay alive
/// while the address is used.</summary>
static unsafe class TensorMemory
{
    static delegate* unmanaged<IntPtr, IntPtr> data;

    public static IntPtr Address(Tensor tensor)
    {
        if (!tensor.is_contiguous())
            throw new ArgumentException("collectives need contiguous tensors");
        if (data == null)
        {
            var library = NativeLibrary.Load(TorchRuntime.LibTorchSharpPath ?? "libLibTorchSharp.so");
            data = (delegate* unmanaged<IntPtr, IntPtr>)NativeLibrary.GetExport(library, "THSTensor_data");
        }
        return data(tensor.Handle);
    }

    public static int ElementSize(Tensor tensor) =>
        tensor.dtype switch
        {
            ScalarType.Float32 => 4,
            ScalarType.Float64 => 8,
            ScalarType.Int64 => 8,
            ScalarType.Int32 => 4,
            ScalarType.Byte => 1,
            _ => throw new ArgumentException(
                $"collectives take float32, float64, int32, int64 or uint8 tensors, not {tensor.dtype}"
            ),
        };
}
