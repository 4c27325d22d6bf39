using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Training;

/// <summary>Device memory in use on a CUDA device, from the CUDA runtime's cudaMemGetInfo (the whole process,
/// including what libtorch's caching allocator holds in reserve). libtorch's allocator statistics are C++ only
/// and not reachable from TorchSharp 0.107, so the peak a run reports is the largest of these per-step
/// readings.</summary>
static unsafe class DeviceMemory
{
    static delegate* unmanaged<nuint*, nuint*, int> memGetInfo;
    static bool probed;

    /// <summary>Bytes in use on the current CUDA device, or null off CUDA or without a loadable CUDA runtime.</summary>
    public static long? UsedBytes(Device device)
    {
        if (device.type != DeviceType.CUDA)
            return null;
        if (!probed)
        {
            probed = true;
            if (CudaRuntime.TryExport("cudaMemGetInfo", out var f))
                memGetInfo = (delegate* unmanaged<nuint*, nuint*, int>)f;
        }
        if (memGetInfo == null)
            return null;
        nuint free,
            total;
        return memGetInfo(&free, &total) == 0 ? (long)(total - free) : null;
    }
}
