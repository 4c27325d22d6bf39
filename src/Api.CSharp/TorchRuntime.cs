using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using TorchSharp;

namespace BlockwiseLR;

/// <summary>libtorch cannot be loaded or used here. <see cref="Exception.Message"/> is one line: the real
/// cause and the fix.</summary>
public sealed class TorchUnavailableException(string message) : Exception(message);

/// <summary>
/// Loads libtorch once, before anything else touches TorchSharp, and turns a failure into one clear line.
/// TorchSharp's own failure blames a missing package reference, prints a long trace, and copies ~500 MB of
/// natives into the bin folder; the usual real cause on Debian 12 is a libstdc++ older than GCC 13.
/// </summary>
public static partial class TorchRuntime
{
    /// <summary>The libstdc++ symbol version TorchSharp 0.107's native library needs (GCC >= 13).</summary>
    public const string RequiredGlibcxx = "GLIBCXX_3.4.32";

    const string SetupFix =
        "Fix: on Debian 12 run `dotnet fsi build.fsx setup` as root (installs libstdc++6 from Debian 13, pinned low); "
        + "or use a system with GCC >= 13's libstdc++ (Ubuntu 24.04+, Debian 13+, Fedora 39+)";

    static readonly object Gate = new();
    static string? failure;
    static bool ready;

    /// <summary>The native backend this build was made with: cpu, cuda or external.</summary>
    public static string Backend =>
        typeof(TorchRuntime)
            .Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "TorchBackend")
            ?.Value
        ?? "cpu";

    /// <summary>The libtorch folder loaded instead of the natives package, if any (<see cref="UseLibTorch"/>, or
    /// the BLR_LIBTORCH environment variable).</summary>
    public static string? LibTorchDirectory { get; private set; } = Environment.GetEnvironmentVariable("BLR_LIBTORCH");

    /// <summary>Loads libtorch from <paramref name="directory"/> (for example a PyTorch install's torch/lib)
    /// instead of the natives package. Call it before the first tensor: a process loads libtorch once.
    /// Throws <see cref="TorchUnavailableException"/> when the folder holds a libtorch other than 2.10.</summary>
    public static void UseLibTorch(string directory)
    {
        var cpu = Path.Combine(directory, "libtorch_cpu.so");
        if (File.Exists(cpu) && CheckLibTorchVersion(cpu) is { } wrongVersion)
            throw new TorchUnavailableException(wrongVersion);
        lock (Gate)
        {
            if (ready && directory != LibTorchDirectory)
                throw new InvalidOperationException(
                    $"libtorch is already loaded; choose the folder {directory} before the first tensor"
                );
            LibTorchDirectory = directory;
        }
    }

    // Load order: each library's dependencies first; CUDA ones before the CPU library that dispatches to them.
    static readonly string[] LibTorchLibraries =
    [
        "libc10.so",
        "libc10_cuda.so",
        "libtorch_cuda.so",
        "libtorch_cpu.so",
        "libtorch.so",
    ];

    /// <summary>Loads libtorch (once per process) or throws <see cref="TorchUnavailableException"/>, which also
    /// names a libtorch other than the 2.10 TorchSharp 0.107 needs (read from the files beside it, before any call
    /// into it).
    /// Every entry point calls this before its first tensor; with <paramref name="cuda"/>, CUDA is initialized
    /// first (TorchSharp leaves CUDA off for the whole process if anything touches libtorch before it).</summary>
    public static void EnsureAvailable(bool cuda = false)
    {
        lock (Gate)
        {
            if (ready && (!cuda || cudaReady))
                return;
            if (ready && cuda)
                throw new TorchUnavailableException(
                    "CUDA was asked for after libtorch started on the CPU in this process; call "
                        + "ComputeDevice.Cuda.Use() (or TorchRuntime.EnsureAvailable(cuda: true)) before the first "
                        + "tensor, in a new process"
                );
            failure ??= Probe(cuda);
            if (failure is not null)
                throw new TorchUnavailableException(failure);
            ready = true;
            cudaReady = cuda;
        }
    }

    static bool cudaReady;

    static string? LoadLibTorchFrom(string directory)
    {
        if (!Directory.Exists(directory))
            return $"libtorch folder {directory}: no such folder (give a libtorch lib folder, e.g. a PyTorch "
                + $"install's torch/lib)";
        var found = LibTorchLibraries.Select(name => Path.Combine(directory, name)).Where(File.Exists).ToList();
        if (!found.Any(p => p.EndsWith("libtorch_cpu.so", StringComparison.Ordinal)))
            return $"libtorch folder {directory}: no libtorch_cpu.so there; give the folder that holds "
                + $"libtorch_cpu.so and libc10.so";
        if (CheckLibTorchVersion(Path.Combine(directory, "libtorch_cpu.so")) is { } wrongVersion)
            return wrongVersion; // before loading it: the wrong libtorch loads fine and crashes later
        foreach (var library in found)
        {
            try
            {
                NativeLibrary.Load(library);
            }
            catch (DllNotFoundException e)
            {
                return Explain(e.Message, LoadedLibStdCxx());
            }
        }
        return null;
    }

    static string? Probe(bool cuda)
    {
        if (!OperatingSystem.IsLinux())
            return null; // TorchSharp's own messages are adequate where we have no better diagnosis.
        if (LibTorchDirectory is { Length: > 0 } external && LoadLibTorchFrom(external) is { } loadFailure)
            return loadFailure;

        var libstdcxx = LoadedLibStdCxx();
        if (libstdcxx is not null && !FileContains(libstdcxx, RequiredGlibcxx))
            return ExplainLibStdCxx(libstdcxx);

        var native = FindLibTorchSharp();
        if (native is null)
            return "libtorch could not be loaded: libLibTorchSharp.so is not next to TorchSharp.dll "
                + $"(looked in {string.Join(", ", NativeSearchDirs())}). Fix: rebuild with `dotnet build` so the "
                + $"TorchSharp package's natives are copied";
        try
        {
            NativeLibrary.Load(native);
        }
        catch (DllNotFoundException e)
        {
            return Explain(e.Message, libstdcxx);
        }
        // libLibTorchSharp.so has mapped the libtorch the loader found; nothing has called into it yet.
        if (MappedLibTorchCpu() is { } mapped && CheckLibTorchVersion(mapped) is { } wrongVersion)
            return wrongVersion;

        try
        {
            if (cuda)
            {
                const string noCuda =
                    "CUDA is not available to libtorch: the loaded libtorch has no CUDA, or no GPU is visible. "
                    + "Fix: load libtorch from a CUDA PyTorch's torch/lib (TorchRuntime.UseLibTorch or the "
                    + "BLR_LIBTORCH variable) on a machine with a GPU, or build with -p:TorchBackend=cuda";
                try
                {
                    torch.InitializeDeviceType(DeviceType.CUDA);
                }
                catch (Exception)
                {
                    return noCuda;
                }
                if (!torch.cuda.is_available())
                    return noCuda;
            }
            torch.InitializeDeviceType(DeviceType.CPU);
            using var probe = torch.ones(1);
        }
        catch (Exception e)
        {
            return $"TorchSharp could not initialise libtorch: {FirstLine(e.Message)}. Fix: check the libtorch next "
                + $"to {native} matches TorchSharp 0.107 (libtorch 2.10)";
        }
        return null;
    }

    /// <summary>Turns the dynamic loader's message into one line with the cause and the fix. Separate so
    /// the diagnosis can be tested without breaking the machine.</summary>
    internal static string Explain(string loaderMessage, string? libstdcxxPath)
    {
        var detail = loaderMessage
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .LastOrDefault()
            ?? loaderMessage;
        if (
            detail.Contains("GLIBCXX_", StringComparison.Ordinal)
            && detail.Contains("not found", StringComparison.Ordinal)
        )
            return ExplainLibStdCxx(libstdcxxPath ?? detail.Split(':')[0].Trim());
        const string missing = ": cannot open shared object file";
        var at = detail.IndexOf(missing, StringComparison.Ordinal);
        if (at > 0)
        {
            var library = detail[..at].Split(' ', ':').Last(s => s.Length > 0);
            return $"libtorch could not be loaded: {library} was not found. Fix: build with the default "
                + $"-p:TorchBackend=cpu "
                + "(restores libtorch-cpu-linux-x64 2.10.0), or for -p:TorchBackend=external load libtorch from a "
                + "folder (TorchRuntime.UseLibTorch or the BLR_LIBTORCH variable) "
                + "with a libtorch folder such as a PyTorch install's torch/lib";
        }
        return $"libtorch could not be loaded: {detail}. {SetupFix}";
    }

    static string ExplainLibStdCxx(string path) =>
        $"libtorch could not be loaded: {path} lacks {RequiredGlibcxx} (TorchSharp 0.107 needs libstdc++ from GCC >= "
        + $"13). {SetupFix}";

    /// <summary>Multiplies two small matrices with TorchSharp and checks the product against its closed
    /// form; returns one line saying where that ran.</summary>
    public static string ComputeCheck(ComputeDevice? device = null)
    {
        var on = (device ?? ComputeDevice.Cpu).Use();
        using var scope = torch.NewDisposeScope();
        var a = torch.tensor(new float[] { 1, 2, 3, 4 }, 2, 2).to(on);
        var b = torch.tensor(new float[] { 5, 6, 7, 8 }, 2, 2).to(on);
        var product = a.matmul(b).cpu().data<float>().ToArray();
        float[] expected = [19, 22, 43, 50];
        if (!product.SequenceEqual(expected))
            throw new TorchUnavailableException(
                $"libtorch loaded but computed [[1,2],[3,4]] x [[5,6],[7,8]] = [{string.Join(",", product)}] instead "
                    + $"of [19,22,43,50]"
            );
        return $"TorchSharp computes on this machine: [[1,2],[3,4]] x [[5,6],[7,8]] = [[19,22],[43,50]] on "
            + $"{(device ?? ComputeDevice.Cpu)} "
            + $"(TorchSharp {typeof(torch).Assembly.GetName().Version?.ToString(3)}, libtorch {torch.__version__}, "
            + $"backend {Backend}, {torch.get_num_threads()} threads)";
    }

    static string FirstLine(string text) =>
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault()
        ?? text;

    /// <summary>The libstdc++ this process actually mapped (the .NET runtime itself links it), else the
    /// usual Debian/Ubuntu/Fedora locations.</summary>
    static string? LoadedLibStdCxx()
    {
        try
        {
            var mapped = File.ReadLines("/proc/self/maps")
                .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).LastOrDefault())
                .FirstOrDefault(p => p is not null && p.Contains("/libstdc++.so", StringComparison.Ordinal));
            if (mapped is not null)
                return mapped;
        }
        catch (IOException) { }
        string[] usual =
        [
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/usr/lib64/libstdc++.so.6",
        ];
        return usual.FirstOrDefault(File.Exists);
    }

    static bool FileContains(string path, string text)
    {
        var needle = Encoding.ASCII.GetBytes(text);
        return File.ReadAllBytes(path).AsSpan().IndexOf(needle) >= 0;
    }

    static IEnumerable<string> NativeSearchDirs()
    {
        var dir = Path.GetDirectoryName(typeof(torch).Assembly.Location) ?? AppContext.BaseDirectory;
        yield return Path.Combine(dir, "runtimes", "linux-x64", "native");
        yield return dir;
    }

    /// <summary>The LibTorchSharp native library this process uses (null when it cannot be found).</summary>
    internal static string? LibTorchSharpPath => FindLibTorchSharp();

    static string? FindLibTorchSharp() =>
        NativeSearchDirs().Select(d => Path.Combine(d, "libLibTorchSharp.so")).FirstOrDefault(File.Exists);
}
