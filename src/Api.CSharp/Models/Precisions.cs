using BlockwiseLR.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Models;

/// <summary>Device-wide precision switches.</summary>
public static class Precisions
{
    /// <summary>TF32 matmuls on CUDA for Tf32 (and for the fp32 parts of Bf16Mixed); off for Fp32.</summary>
    public static void Apply(Precision precision, Device device)
    {
        if (device.type != DeviceType.CUDA)
            return;
        backends.cuda.matmul.allow_tf32 = precision != Precision.Fp32;
        backends.cudnn.allow_tf32 = precision != Precision.Fp32;
    }
}
