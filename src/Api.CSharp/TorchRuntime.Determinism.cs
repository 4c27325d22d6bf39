using System.Runtime.InteropServices;

namespace BlockwiseLR;

public static partial class TorchRuntime
{
    /// <summary>
    /// PyTorch's <c>torch.use_deterministic_algorithms(on)</c> and <c>torch.backends.cudnn.deterministic = on</c>
    /// (with cuDNN's benchmark mode off), for the whole process: on CUDA, operations with a deterministic kernel use
    /// it, and those without one throw (or warn, with <paramref name="warnOnly"/>) instead of giving results that
    /// change from run to run. TorchSharp has no binding for these, so they are called in libtorch_cpu itself (the C++
    /// <c>at::Context</c> setters, Itanium ABI, Linux x64). cuBLAS needs CUBLAS_WORKSPACE_CONFIG for deterministic
    /// matrix products; it is set to ":4096:8" when unset, which takes effect when it is called before the first
    /// product on the GPU. On the CPU libtorch's kernels are deterministic for a fixed thread count already.
    /// Call it after <see cref="ComputeDevice.Use"/>.
    /// </summary>
    public static unsafe void UseDeterministicAlgorithms(bool on, bool warnOnly = false)
    {
        lock (Gate)
            if (!ready)
                throw new InvalidOperationException(
                    "libtorch is not loaded yet: call ComputeDevice.Use() (or TorchRuntime.EnsureAvailable) first"
                );
        var context = Context();
        ((delegate* unmanaged<nint, byte, byte, void>)Export("_ZN2at7Context26setDeterministicAlgorithmsEbb"))(
            context,
            on ? (byte)1 : (byte)0,
            warnOnly ? (byte)1 : (byte)0
        );
        ((delegate* unmanaged<nint, byte, void>)Export("_ZN2at7Context21setDeterministicCuDNNEb"))(
            context,
            on ? (byte)1 : (byte)0
        );
        if (on)
        {
            ((delegate* unmanaged<nint, byte, void>)Export("_ZN2at7Context17setBenchmarkCuDNNEb"))(context, 0);
            if (Environment.GetEnvironmentVariable("CUBLAS_WORKSPACE_CONFIG") is null)
            {
                Environment.SetEnvironmentVariable("CUBLAS_WORKSPACE_CONFIG", ":4096:8");
                setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 0); // the native environment cuBLAS reads
            }
        }
    }

    /// <summary>Whether deterministic algorithms are on (libtorch's own flag, read back).</summary>
    public static unsafe bool DeterministicAlgorithms
    {
        get
        {
            lock (Gate)
                if (!ready)
                    return false;
            return ((delegate* unmanaged<nint, byte>)Export("_ZNK2at7Context23deterministicAlgorithmsEv"))(Context())
                != 0;
        }
    }

    static unsafe nint Context() => ((delegate* unmanaged<nint>)Export("_ZN2at13globalContextEv"))();

    static nint Export(string symbol)
    {
        var library = LibTorchDirectory is { Length: > 0 } folder
            ? Path.Combine(folder, "libtorch_cpu.so")
            : "libtorch_cpu.so";
        if (
            NativeLibrary.TryLoad(library, out var handle)
            && NativeLibrary.TryGetExport(handle, symbol, out var address)
        )
            return address;
        throw new TorchUnavailableException(
            $"libtorch_cpu.so does not export {symbol}: this libtorch is not the 2.x C++ build TorchSharp 0.107 "
                + $"expects, so deterministic algorithms cannot be switched on"
        );
    }

    [DllImport("libc.so.6", EntryPoint = "setenv")]
    static extern int setenv(string name, string value, int overwrite);
}
