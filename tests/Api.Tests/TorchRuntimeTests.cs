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
