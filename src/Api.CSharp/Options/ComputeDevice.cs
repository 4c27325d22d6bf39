using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace BlockwiseLR;

/// <summary>Where a run computes: the CPU, the current CUDA device, or CUDA device N. Written and read as
/// "cpu", "cuda" and "cuda:N" (any case).</summary>
[JsonConverter(typeof(ComputeDeviceConverter))]
public sealed record ComputeDevice
{
    ComputeDevice(bool cuda, int? index) => (IsCuda, Index) = (cuda, index);

    /// <summary>The CPU.</summary>
    public static ComputeDevice Cpu { get; } = new(false, null);

    /// <summary>CUDA's current device (device 0 unless CUDA_VISIBLE_DEVICES or a launcher says otherwise).</summary>
    public static ComputeDevice Cuda { get; } = new(true, null);

    /// <summary>CUDA device <paramref name="index"/>; a negative index is an <see
    /// cref="ArgumentOutOfRangeException"/>.</summary>
    public static ComputeDevice CudaDevice(int index) =>
        index >= 0
            ? new(true, index)
            : throw new ArgumentOutOfRangeException(nameof(index), index, "a CUDA device index is >= 0");

    /// <summary>True for a CUDA device, false for the CPU.</summary>
    public bool IsCuda { get; }

    /// <summary>The CUDA device index, or null for the CPU and for "cuda".</summary>
    public int? Index { get; }

    /// <summary>Reads cpu, cuda or cuda:N; anything else is a <see cref="FormatException"/>.</summary>
    public static ComputeDevice Parse(string text)
    {
        var key = (text ?? "").Trim().ToLowerInvariant();
        if (key == "cpu")
            return Cpu;
        if (key == "cuda")
            return Cuda;
        if (
            key.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(key["cuda:".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var index)
        )
            return CudaDevice(index);
        throw new FormatException($"unknown device '{text}' (known: cpu, cuda, cuda:N)");
    }

    /// <summary>"cpu", "cuda" or "cuda:N" (what <see cref="Parse"/> reads).</summary>
    public override string ToString() =>
        !IsCuda ? "cpu"
        : Index is { } i ? $"cuda:{i}"
        : "cuda";

    /// <summary>Makes this device usable and returns it: loads libtorch (with CUDA first when asked for) and checks
    /// that cuda:N exists. Every command and the trainer resolve their device here; a device that cannot be used is a
    /// <see cref="TorchUnavailableException"/> whose message says why in one line.</summary>
    public TorchSharp.torch.Device Use()
    {
        TorchRuntime.EnsureAvailable(cuda: IsCuda);
        if (Index is { } i && TorchSharp.torch.cuda.device_count() is var count && i >= count)
            throw new TorchUnavailableException(
                $"cuda:{i}: this machine has {count} GPU(s) visible (cuda:0 to cuda:{count - 1}); pick one of them or "
                    + "check CUDA_VISIBLE_DEVICES"
            );
        return ToDevice();
    }

    /// <summary>The TorchSharp device.</summary>
    public TorchSharp.torch.Device ToDevice() =>
        !IsCuda ? TorchSharp.torch.CPU
        : Index is { } i ? new TorchSharp.torch.Device(TorchSharp.DeviceType.CUDA, i)
        : TorchSharp.torch.CUDA;
}

sealed class ComputeDeviceConverter : TextConverter<ComputeDevice>
{
    protected override string Expected => "expected cpu, cuda or cuda:N";

    protected override ComputeDevice Parse(string text) => ComputeDevice.Parse(text);
}
