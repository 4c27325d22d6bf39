using System.Runtime.InteropServices;

namespace BlockwiseLR.Training;

/// <summary>The CUDA runtime libtorch already loaded (libcudart, by soname so it binds to that copy).</summary>
static class CudaRuntime
{
    public static bool TryExport(string function, out nint address)
    {
        foreach (var name in new[] { "libcudart.so.12", "libcudart.so.13", "libcudart.so" })
            if (
                NativeLibrary.TryLoad(name, out var cudart) && NativeLibrary.TryGetExport(cudart, function, out address)
            )
                return true;
        address = 0;
        return false;
    }
}
