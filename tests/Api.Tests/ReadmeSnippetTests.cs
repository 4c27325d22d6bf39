using System.Text.RegularExpressions;

namespace BlockwiseLR.Tests;

/// The README's and the package readme's code is copied from the samples, which the test command builds and runs
/// (build.fsx runSamples): a README block `<!-- README: NAME (PATH) -->` followed by a code fence must equal the
/// region between `// README: NAME begin` and `// README: NAME end` in PATH (its common indentation removed).
public partial class ReadmeSnippetTests
{
    [GeneratedRegex(
        @"<!-- README: (?<name>\S+) \((?<path>[^)]+)\) -->\n```(?<lang>\w+)\n(?<code>.*?)\n```",
        RegexOptions.Singleline
    )]
    private static partial Regex Block();

    [GeneratedRegex(@"^[ \t]*// README: (?<name>\S+) begin$", RegexOptions.Multiline)]
    private static partial Regex Begin();

    static string Normalize(string text) => text.Replace("\r\n", "\n");

    /// The region NAME of the file, without its marker lines, common indentation and blank edges.
    internal static string Region(string source, string name)
    {
        var lines = Normalize(source).Split('\n');
        var begin = Array.FindIndex(lines, l => l.Trim() == $"// README: {name} begin");
        var end = Array.FindIndex(lines, l => l.Trim() == $"// README: {name} end");
        Assert.True(begin >= 0 && end > begin, $"no region {name} (begin and end markers)");
        var body = lines[(begin + 1)..end]
            .SkipWhile(string.IsNullOrWhiteSpace)
            .Reverse()
            .SkipWhile(string.IsNullOrWhiteSpace)
            .Reverse()
            .ToList();
        var indent = body.Where(l => l.Trim().Length > 0).Min(l => l.Length - l.TrimStart().Length);
        return string.Join("\n", body.Select(l => l.Trim().Length == 0 ? "" : l[indent..].TrimEnd()));
    }

    static List<(string Name, string Path, string Code)> Blocks(string document) =>
        Block()
            .Matches(Normalize(File.ReadAllText(Path.Combine(TestPaths.RepositoryRoot(), document))))
            .Select(m => (m.Groups["name"].Value, m.Groups["path"].Value, m.Groups["code"].Value))
            .ToList();

    [Theory]
    [InlineData("README.md")]
    [InlineData("docs/package-readme.md")]
    public void Every_snippet_is_its_samples_region_verbatim(string document)
    {
        var blocks = Blocks(document);
        Assert.NotEmpty(blocks);
        foreach (var (name, path, code) in blocks)
        {
            var source = File.ReadAllText(Path.Combine(TestPaths.RepositoryRoot(), path));
            var expected = Region(source, name);
            Assert.True(
                expected == string.Join("\n", code.Split('\n').Select(l => l.TrimEnd())),
                $"{document}: snippet {name} differs from its region in {path}; copy the region again"
            );
        }
    }

    [Fact]
    public void The_readme_shows_every_sample_region_a_basic_run_an_own_model_and_results_in_CSharp_and_FSharp()
    {
        var root = TestPaths.RepositoryRoot();
        var regions = Directory
            .EnumerateFiles(Path.Combine(root, "samples"), "Program.*", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}"))
            .SelectMany(f => Begin().Matches(File.ReadAllText(f)).Select(m => m.Groups["name"].Value))
            .Order()
            .ToList();
        var shown = Blocks("README.md").Select(b => b.Name).Order().ToList();
        Assert.Equal(regions, shown);
        Assert.Equal(
            [
                "basic-run",
                "fsharp-basic-run",
                "fsharp-own-model",
                "fsharp-reading-results",
                "own-model",
                "reading-results",
            ],
            shown
        );
        var readme = File.ReadAllText(Path.Combine(root, "README.md"));
        Assert.True(readme.IndexOf("## Use it from C#") < readme.IndexOf("## The main job"), "near the top");
        Assert.True(readme.IndexOf("## Use it from F#") < readme.IndexOf("## The main job"), "near the top");
    }

    [Fact]
    public void A_region_is_read_without_its_markers_and_indentation()
    {
        const string source = "x\n    // README: a begin\n\n    let y =\n        1\n    // README: a end\nz\n";
        Assert.Equal("let y =\n    1", Region(source, "a"));
    }
}
