using System.Text.Json;
using System.Text.RegularExpressions;

namespace BlockwiseLR;

// The libtorch version check. TorchSharp 0.107's native library is built against libtorch 2.10's C++ ABI; an older
// libtorch (Debian's 2.6, an older PyTorch's torch/lib) loads without a word and then crashes the process (SIGSEGV)
// at some later call. So the version is read from what ships beside libtorch_cpu.so, never by calling into it:
// the file name (Debian's libtorch_cpu.so.2.6), a libtorch archive's build-version, a PyTorch install's
// version.py, the NuGet package folder it sits in, or the app's deps.json that copied it from a package.
public static partial class TorchRuntime
{
    /// <summary>The libtorch (major.minor) TorchSharp 0.107 is built against. Older ones are refused; newer ones
    /// are let through (PyTorch 2.11's libtorch runs it on CUDA: docs/gpu.md, the GPU device check).</summary>
    internal const string RequiredLibTorch = "2.10";

    /// <summary>A libtorch version and where it was read.</summary>
    internal sealed record LibTorchVersionFound(string Version, string Evidence);

    /// <summary>The version of the libtorch whose libtorch_cpu.so is <paramref name="libtorchCpu"/>, read from
    /// the files around it (null when nothing there says).</summary>
    internal static LibTorchVersionFound? LibTorchVersionOf(string libtorchCpu)
    {
        var resolved = ResolveLinks(libtorchCpu);
        foreach (var path in new[] { libtorchCpu, resolved }.Distinct())
            if (FromFileName(path) is { } named)
                return named;
        foreach (var dir in new[] { libtorchCpu, resolved }.Select(Path.GetDirectoryName).Distinct())
        {
            if (dir is null)
                continue;
            var found = FromBuildVersion(dir) ?? FromVersionPy(dir) ?? FromPackageFolder(dir) ?? FromDepsJson(dir);
            if (found is not null)
                return found;
        }
        return null;
    }

    /// <summary>One line naming the libtorch found and the one needed, or null when the version is right or
    /// cannot be told.</summary>
    internal static string? CheckLibTorchVersion(string libtorchCpu)
    {
        var found = LibTorchVersionOf(libtorchCpu);
        if (found is null || !(Version.TryParse(MajorMinor(found.Version), out var v) && v < Required))
            return null;
        return $"libtorch {found.Version} is loaded from {libtorchCpu} ({found.Evidence}), but TorchSharp 0.107 "
            + $"needs libtorch {RequiredLibTorch} (or later); an older one crashes the process. Fix: build with "
            + "the default -p:TorchBackend=cpu (restores libtorch-cpu-linux-x64 2.10.0), or load libtorch 2.10 or "
            + "later from a folder (TorchRuntime.UseLibTorch or the BLR_LIBTORCH variable) such as a PyTorch "
            + "install's torch/lib, and take older libtorch folders off LD_LIBRARY_PATH";
    }

    /// <summary>The libtorch_cpu.so this process mapped (after libLibTorchSharp.so loaded it), or null.</summary>
    static string? MappedLibTorchCpu()
    {
        try
        {
            return File.ReadLines("/proc/self/maps")
                .Select(l => l.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries))
                .Where(f => f.Length == 6)
                .Select(f => f[5].Trim())
                .FirstOrDefault(p =>
                    p.StartsWith('/') && Path.GetFileName(p).StartsWith("libtorch_cpu.so", StringComparison.Ordinal)
                );
        }
        catch (IOException)
        {
            return null;
        }
    }

    static readonly Version Required = Version.Parse(RequiredLibTorch);

    static string? MajorMinor(string version) =>
        Regex.Match(version, @"^(\d+)\.(\d+)") is { Success: true } m
            ? $"{int.Parse(m.Groups[1].Value)}.{int.Parse(m.Groups[2].Value)}"
            : null;

    static string ResolveLinks(string path)
    {
        try
        {
            return File.ResolveLinkTarget(path, returnFinalTarget: true)?.FullName ?? path;
        }
        catch (IOException)
        {
            return path;
        }
    }

    // Debian and Fedora name the library by its version: libtorch_cpu.so.2.6.
    static LibTorchVersionFound? FromFileName(string path) =>
        Regex.Match(Path.GetFileName(path), @"^libtorch_cpu\.so\.(\d+\.\d+(\.\d+)?)$") is { Success: true } m
            ? new(m.Groups[1].Value, "its file name says so")
            : null;

    // The libtorch archive from pytorch.org: libtorch/build-version beside libtorch/lib ("2.10.0+cpu").
    static LibTorchVersionFound? FromBuildVersion(string dir)
    {
        var file = Path.Combine(dir, "..", "build-version");
        return ReadFirstLine(file) is { } line && MajorMinor(line) is not null
            ? new(line, $"{Path.GetFullPath(file)} says so")
            : null;
    }

    // A PyTorch install: torch/lib beside torch/version.py (__version__ = '2.10.0+cu128').
    static LibTorchVersionFound? FromVersionPy(string dir)
    {
        var file = Path.Combine(dir, "..", "version.py");
        try
        {
            if (!File.Exists(file))
                return null;
            var m = Regex.Match(File.ReadAllText(file), @"(?m)^__version__\s*=\s*['""]([^'""]+)['""]");
            return m.Success && MajorMinor(m.Groups[1].Value) is not null
                ? new(m.Groups[1].Value, $"{Path.GetFullPath(file)} says so")
                : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    // Straight from the NuGet cache: .../libtorch-cpu-linux-x64/2.10.0/runtimes/linux-x64/native.
    static LibTorchVersionFound? FromPackageFolder(string dir)
    {
        var parts = Path.GetFullPath(dir).Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length < 5 || parts[^1] != "native" || parts[^3] != "runtimes")
            return null;
        var (id, version) = (parts[^5], parts[^4]);
        return id.StartsWith("libtorch", StringComparison.OrdinalIgnoreCase) && MajorMinor(version) is not null
            ? new(version, $"the NuGet package {id} {version} holds it")
            : null;
    }

    // Copied into an app's folder from a natives package: the app's deps.json names the package that holds it.
    static LibTorchVersionFound? FromDepsJson(string dir)
    {
        var parts = Path.GetFullPath(dir).TrimEnd('/').Split('/');
        var app =
            parts.Length > 3 && parts[^1] == "native" && parts[^3] == "runtimes"
                ? Path.GetFullPath(Path.Combine(dir, "..", "..", ".."))
                : dir;
        try
        {
            foreach (var deps in Directory.EnumerateFiles(app, "*.deps.json").Order(StringComparer.Ordinal))
            {
                using var json = JsonDocument.Parse(File.ReadAllText(deps));
                if (!json.RootElement.TryGetProperty("targets", out var targets))
                    continue;
                foreach (var target in targets.EnumerateObject())
                foreach (var library in target.Value.EnumerateObject())
                {
                    var assets = new[] { "runtimeTargets", "native" }
                        .Where(kind => library.Value.TryGetProperty(kind, out _))
                        .SelectMany(kind => library.Value.GetProperty(kind).EnumerateObject())
                        .Select(asset => Path.GetFileName(asset.Name));
                    var slash = library.Name.LastIndexOf('/');
                    if (
                        slash > 0
                        && assets.Contains("libtorch_cpu.so")
                        && MajorMinor(library.Name[(slash + 1)..]) is { }
                    )
                        return new(
                            library.Name[(slash + 1)..],
                            $"{Path.GetFileName(deps)} says it comes from the package {library.Name[..slash]}"
                        );
                }
            }
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            return null;
        }
        return null;
    }

    static string? ReadFirstLine(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadLines(path).FirstOrDefault()?.Trim() : null;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
