using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Tests;

public class TorchRuntimeTests
{
    [Fact]
    public void Creates_and_multiplies_tensors_on_cpu()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var a = arange(6, dtype: float32).reshape(2, 3); // [[0,1,2],[3,4,5]]
        var b = arange(6, dtype: float32).reshape(3, 2).add(1); // [[1,2],[3,4],[5,6]]
        var product = a.matmul(b);
        Assert.Equal(new long[] { 2, 2 }, product.shape);
        Assert.Equal(DeviceType.CPU, product.device_type);
        // By hand: [0+3+10, 0+4+12; 3+12+25, 6+16+30]
        Assert.Equal(new float[] { 13, 16, 40, 52 }, product.data<float>().ToArray());
    }

    [Fact]
    public void Matmul_agrees_with_a_plain_loop_and_the_compute_check_passes_in_one_line()
    {
        // The oracle is a triple loop in C#, on random shapes; the compute check itself must not throw.
        Assert.DoesNotContain('\n', TorchRuntime.ComputeCheck());
        var random = new Random(3);
        for (var trial = 0; trial < 20; trial++)
        {
            var (n, k, m) = (random.Next(1, 9), random.Next(1, 9), random.Next(1, 9));
            var a = Enumerable.Range(0, n * k).Select(_ => random.NextDouble() - 0.5).ToArray();
            var b = Enumerable.Range(0, k * m).Select(_ => random.NextDouble() - 0.5).ToArray();
            var product = TorchSharp
                .torch.tensor(a, n, k)
                .matmul(TorchSharp.torch.tensor(b, k, m))
                .data<double>()
                .ToArray();
            for (var i = 0; i < n; i++)
            for (var j = 0; j < m; j++)
                Assert.Equal(Enumerable.Range(0, k).Sum(x => a[i * k + x] * b[x * m + j]), product[i * m + j], 12);
        }
    }

    [Fact]
    public void Explains_an_old_libstdcxx_in_one_line_with_the_fix()
    {
        const string loader =
            "Unable to load shared library '/app/runtimes/linux-x64/native/libLibTorchSharp.so' or one of its dependencies. In order to help diagnose loading problems, consider using a tool like strace. If you're using glibc, consider setting the LD_DEBUG environment variable: \n"
            + "/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.32' not found (required by /app/runtimes/linux-x64/native/libLibTorchSharp.so)";
        var message = TorchRuntime.Explain(loader, null);
        Assert.DoesNotContain('\n', message);
        Assert.Contains("/lib/x86_64-linux-gnu/libstdc++.so.6 lacks GLIBCXX_3.4.32", message);
        Assert.Contains("build.fsx setup", message);
        Assert.Contains("Ubuntu 24.04+", message);
    }

    [Fact]
    public void Explains_a_missing_libtorch_in_one_line_with_the_fix()
    {
        const string loader =
            "Unable to load shared library 'x/libLibTorchSharp.so' or one of its dependencies.\n"
            + "libtorch_cpu.so: cannot open shared object file: No such file or directory";
        var message = TorchRuntime.Explain(loader, "/usr/lib/x86_64-linux-gnu/libstdc++.so.6");
        Assert.DoesNotContain('\n', message);
        Assert.Contains("libtorch_cpu.so was not found", message);
        Assert.Contains("TorchRuntime.UseLibTorch or the BLR_LIBTORCH variable", message); // blr says --libtorch DIR
    }

    /// A fake libtorch: libtorch_cpu.so (not a library at all) laid out as a distribution lays it out.
    static string FakeLibTorch(string root, string lib, string? versionFile = null, string? versionText = null)
    {
        var dir = Path.Combine(root, lib);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "libtorch_cpu.so"), "not a library");
        if (versionFile is not null)
            File.WriteAllText(Path.Combine(root, versionFile), versionText);
        return dir;
    }

    [Fact]
    public void Reads_the_libtorch_version_from_the_files_beside_it_in_each_layout()
    {
        var root = Directory.CreateTempSubdirectory("blr-libtorch-").FullName;
        try
        {
            // pytorch.org's libtorch archive: libtorch/build-version beside libtorch/lib.
            var archive = FakeLibTorch(Path.Combine(root, "zip", "libtorch"), "lib", "build-version", "2.6.0+cpu\n");
            // A PyTorch install: torch/version.py beside torch/lib.
            var wheel = FakeLibTorch(
                Path.Combine(root, "site-packages", "torch"),
                "lib",
                "version.py",
                "# generated\n__version__ = '2.9.1+cu128'\ngit_version = 'abc'\n"
            );
            // The NuGet cache: <id>/<version>/runtimes/<rid>/native.
            var nuget = FakeLibTorch(
                Path.Combine(root, "packages", "libtorch-cpu-linux-x64", "2.10.0"),
                Path.Combine("runtimes", "linux-x64", "native")
            );
            // Debian: libtorch_cpu.so -> libtorch_cpu.so.2.6 (libtorch-dev's link to libtorch2.6's file).
            var debian = Path.Combine(root, "usr-lib");
            Directory.CreateDirectory(debian);
            File.WriteAllText(Path.Combine(debian, "libtorch_cpu.so.2.6"), "not a library");
            File.CreateSymbolicLink(Path.Combine(debian, "libtorch_cpu.so"), "libtorch_cpu.so.2.6");
            var bare = FakeLibTorch(Path.Combine(root, "bare"), "lib");

            string? Version(string dir) =>
                TorchRuntime.LibTorchVersionOf(Path.Combine(dir, "libtorch_cpu.so"))?.Version;
            Assert.Equal("2.6.0+cpu", Version(archive));
            Assert.Equal("2.9.1+cu128", Version(wheel));
            Assert.Equal("2.10.0", Version(nuget));
            Assert.Equal("2.6", Version(debian));
            Assert.Null(Version(bare)); // nothing says: not refused

            // PyTorch 2.11's libtorch runs TorchSharp 0.107 (docs/gpu.md): later is let through, older refused.
            var later = FakeLibTorch(
                Path.Combine(root, "later", "torch"),
                "lib",
                "version.py",
                "__version__ = '2.11.0+cu130'"
            );
            Assert.Equal("2.11.0+cu130", Version(later));
            Assert.Null(TorchRuntime.CheckLibTorchVersion(Path.Combine(later, "libtorch_cpu.so")));
            Assert.Null(TorchRuntime.CheckLibTorchVersion(Path.Combine(nuget, "libtorch_cpu.so")));
            Assert.NotNull(TorchRuntime.CheckLibTorchVersion(Path.Combine(debian, "libtorch_cpu.so")));
            Assert.NotNull(TorchRuntime.CheckLibTorchVersion(Path.Combine(archive, "libtorch_cpu.so")));
            Assert.Null(TorchRuntime.CheckLibTorchVersion(Path.Combine(bare, "libtorch_cpu.so")));
            var wrong = TorchRuntime.CheckLibTorchVersion(Path.Combine(wheel, "libtorch_cpu.so"));
            Assert.NotNull(wrong);
            Assert.DoesNotContain('\n', wrong);
            Assert.Contains("libtorch 2.9.1+cu128 is loaded from", wrong);
            Assert.Contains("version.py says so", wrong);
            Assert.Contains("needs libtorch 2.10", wrong);
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    [Fact]
    public void The_libtorch_this_process_loaded_is_2_10_by_its_natives_package()
    {
        // The natives copied into the test's bin folder: only the deps.json says which package they came from.
        TorchRuntime.EnsureAvailable();
        var mapped = File.ReadLines("/proc/self/maps")
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Last())
            .First(p => p.EndsWith("/libtorch_cpu.so", StringComparison.Ordinal));
        var found = TorchRuntime.LibTorchVersionOf(mapped);
        Assert.NotNull(found);
        Assert.Equal("2.10.0", found.Version);
        Assert.Contains("libtorch-cpu-linux-x64", found.Evidence);
    }

    [Fact]
    public void UseLibTorch_refuses_a_folder_that_holds_another_libtorch_naming_both_versions()
    {
        var root = Directory.CreateTempSubdirectory("blr-libtorch-").FullName;
        try
        {
            var lib = FakeLibTorch(Path.Combine(root, "libtorch"), "lib", "build-version", "2.6.0+cpu");
            var before = TorchRuntime.LibTorchDirectory;
            var e = Assert.Throws<TorchUnavailableException>(() => TorchRuntime.UseLibTorch(lib));
            Assert.DoesNotContain('\n', e.Message);
            Assert.StartsWith($"libtorch 2.6.0+cpu is loaded from {lib}/libtorch_cpu.so", e.Message);
            Assert.Contains("needs libtorch 2.10", e.Message);
            Assert.Equal(before, TorchRuntime.LibTorchDirectory); // not taken
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    [Fact]
    public void Blr_with_another_libtorch_exits_3_naming_both_versions_before_loading_it()
    {
        // BLR_LIBTORCH goes through EnsureAvailable's folder load. Without the check, loading this file would
        // fail as "invalid ELF header"; a real libtorch 2.6 would load and crash later.
        var root = Directory.CreateTempSubdirectory("blr-libtorch-").FullName;
        try
        {
            var lib = FakeLibTorch(Path.Combine(root, "libtorch"), "lib", "build-version", "2.6.0+cpu");
            var (code, _, error) = TestPaths.Run(["doctor"], new Dictionary<string, string> { ["BLR_LIBTORCH"] = lib });
            Assert.Equal(3, code);
            Assert.Contains($"libtorch 2.6.0+cpu is loaded from {lib}/libtorch_cpu.so", error);
            Assert.Contains("needs libtorch 2.10", error);
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    [Fact]
    public void This_build_uses_the_cpu_backend_by_default()
    {
        Assert.Equal("cpu", TorchRuntime.Backend);
    }
}

/// The process-wide deterministic switch, called in libtorch's C++ context: run alone (it changes every test's
/// tensors while it is on), in the collection that runs after the parallel ones.
[Collection(nameof(DataParallelTests))]
public class DeterminismTests
{
    [Fact]
    public void Deterministic_algorithms_switch_libtorch_itself_on_and_off()
    {
        TorchRuntime.EnsureAvailable();
        Assert.False(TorchRuntime.DeterministicAlgorithms);
        try
        {
            TorchRuntime.UseDeterministicAlgorithms(true);
            Assert.True(TorchRuntime.DeterministicAlgorithms);
            // libtorch's own evidence, not our flag: in deterministic mode it fills uninitialised memory with NaN
            // (torch.utils.deterministic.fill_uninitialized_memory, on by default).
            using var uninitialised = empty(64, dtype: float32);
            Assert.All(uninitialised.data<float>().ToArray(), x => Assert.True(float.IsNaN(x)));
            Assert.Equal(":4096:8", Environment.GetEnvironmentVariable("CUBLAS_WORKSPACE_CONFIG"));
        }
        finally
        {
            TorchRuntime.UseDeterministicAlgorithms(false);
        }
        Assert.False(TorchRuntime.DeterministicAlgorithms);
    }
}
