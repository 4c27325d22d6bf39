using System.Diagnostics;

namespace BlockwiseLR.Tests;

static class TestPaths
{
    /// The blr built beside these tests (same configuration).
    public static string Blr()
    {
        var parts = AppContext.BaseDirectory.Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        var configuration = parts[Array.LastIndexOf(parts, "bin") + 1]; // .../bin/<configuration>/net10.0/
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "src", "Cli.FSharp", "bin", configuration, "net10.0", "blr.dll");
            if (File.Exists(candidate))
                return candidate;
        }
        throw new FileNotFoundException("blr.dll is not built; build Hybrid.sln first");
    }

    /// The repository these tests were built from (the folder that holds Hybrid.sln).
    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Hybrid.sln")))
                return dir.FullName;
        throw new DirectoryNotFoundException("no Hybrid.sln above the test binaries");
    }

    /// Starts `dotnet blr.dll ARGS` with output captured; `fault` sets BLR_FAULT, `environment` any variables.
    public static Process Start(
        IEnumerable<string> args,
        string? fault = null,
        IReadOnlyDictionary<string, string>? environment = null
    )
    {
        var info = new ProcessStartInfo("dotnet", [Blr(), .. args])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        if (fault is not null)
            info.Environment["BLR_FAULT"] = fault;
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
            info.Environment[name] = value;
        return Process.Start(info)!;
    }

    /// Runs blr to the end: (exit code, stdout, stderr).
    public static (int Code, string Output, string Error) Run(
        IEnumerable<string> args,
        IReadOnlyDictionary<string, string>? environment = null
    )
    {
        using var process = Start(args, environment: environment);
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output.Result, error);
    }
}

/// A prepared dataset read back in corpus order: each line of its chunk index (chunks.tsv) takes that many tokens
/// from the train or the val shards, in order, and every token of both splits is used exactly once.
static class PreparedCorpus
{
    public static IEnumerable<int> Tokens(BlockwiseLR.Data.TokenShard shard)
    {
        for (long i = 0; i < shard.Count; i++)
            yield return shard[i];
    }

    public static List<int> InOrder(string directory)
    {
        using var train = BlockwiseLR.Data.TokenDataset.Open(directory, "train");
        using var val = BlockwiseLR.Data.TokenDataset.Open(directory, "val");
        using var trainTokens = train.Shards.SelectMany(Tokens).GetEnumerator();
        using var valTokens = val.Shards.SelectMany(Tokens).GetEnumerator();
        var corpus = new List<int>();
        foreach (var chunk in File.ReadLines(Path.Combine(directory, "chunks.tsv")).Select(l => l.Split('\t')))
        {
            var source = chunk[3] == "val" ? valTokens : trainTokens;
            for (var i = 0; i < long.Parse(chunk[2]); i++)
            {
                Assert.True(source.MoveNext());
                corpus.Add(source.Current);
            }
        }
        Assert.False(trainTokens.MoveNext());
        Assert.False(valTokens.MoveNext());
        return corpus;
    }
}

/// Progress reported on the calling thread as it happens (Progress&lt;T&gt; posts to the thread pool, so a test could
/// read its list before the last report arrives).
sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
