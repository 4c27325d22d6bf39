using System.Collections;
using System.Reflection;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Models;
using BlockwiseLR.Training;

namespace BlockwiseLR.Tests;

/// Options grouped by component: files of the previous release read, the JSON mirrors the groups, and the CLI maps
/// every flag to an option and back through its one table.
public class OptionGroupsTests
{
    static string Release(string file) =>
        Path.Combine(TestPaths.RepositoryRoot(), "tests", "data", "options-0.1.0", file);

    /// What `blr train` of release 0.1.0 was given when it wrote tests/data/options-0.1.0 (its options.json and its
    /// last checkpoint's trainer.json, flat keys, paths made relative).
    static readonly PretrainOptions Given = new()
    {
        Model = new()
        {
            Name = "llama-tiny",
            Overrides = new()
            {
                Layers = 1,
                Width = 32,
                Heads = 2,
                KvHeads = 1,
            },
        },
        Data = new() { Path = "data" },
        Optimizer = new()
        {
            Kind = OptimizerKind.BlockwiseAdamMini,
            Ratios = BlockRatios.Auto(new AutoRatioSettings { Alpha = 0.5 }),
            // 0.1.0 wrote every beta; unset ones now mean the family's recipe.
            Beta1 = 0.9,
            Beta2 = 0.95,
            WeightDecay = 0.05,
        },
        Schedule = new()
        {
            Kind = LrSchedule.Wsd,
            Lr = 0.002,
            WarmupSteps = 1,
            FloorLr = 1e-4,
        },
        Training = new()
        {
            Steps = 2,
            BatchSize = 4,
            MicroBatchSize = 2,
            SeqLen = 16,
            Seed = 7,
            GradClip = 0.5,
            Threads = 1,
        },
        Evaluation = new() { Every = 1, Windows = 2 },
        Run = new() { Out = "run" },
        Checkpoint = new() { Every = 1, Keep = 1 },
        Debug = new() { SharpnessEvery = 1 },
    };

    [Fact]
    public void An_options_json_and_a_checkpoint_written_by_release_0_1_0_load_into_the_groups()
    {
        Assert.Equal(Given, PretrainOptions.FromJsonFile(Release("options.json")));
        var state = Checkpoints.ReadState(
            Path.GetDirectoryName(Release("trainer.json"))!,
            ModelConfigs.Create("llama-tiny", "layers=1", "width=32", "heads=2", "kv-heads=1", "vocab=4032")
        );
        Assert.Equal(Given, state.Options);
        Assert.Equal(2, state.Auto!.Steps);
        Assert.Equal(["emb", "ffn", "head", "norm", "qk", "vo"], state.Auto.Smoothed.Keys.Order());
    }

    [Fact]
    public void Options_json_mirrors_the_groups_and_reads_back()
    {
        var node = JsonNode.Parse(Given.ToJson())!.AsObject();
        Assert.Equal(
            [
                "model",
                "data",
                "optimizer",
                "schedule",
                "training",
                "evaluation",
                "run",
                "checkpoint",
                "parallelism",
                "debug",
            ],
            node.Select(kv => kv.Key)
        );
        Assert.Equal(0.002, node["schedule"]!["lr"]!.GetValue<double>());
        Assert.Equal("blockwise-adam-mini", node["optimizer"]!["kind"]!.GetValue<string>());
        Assert.Equal(Given, PretrainOptions.FromJson(Given.ToJson()));
        // Paths and the flat names of earlier versions both set an option.
        var set = PretrainOptions.Defaults.With([
            new("schedule.lr", 0.01),
            new("steps", 7),
            new("optimizer.ratios", "auto"),
            new("optimizer.ratios.every", 3),
        ]);
        Assert.Equal((0.01, 7, 3), (set.Schedule.Lr, set.Training.Steps, set.Optimizer.Ratios.AutoSettings!.Every));
        var unknown = Assert.Throws<InvalidOptionException>(() =>
            PretrainOptions.FromJson("""{ "schedule": { "lrr": 1 } }""")
        );
        Assert.Equal("schedule.lrr", unknown.Option);
        var wrong = Assert.Throws<InvalidOptionException>(() =>
            PretrainOptions.FromJson("""{ "training": { "steps": "x" } }""")
        );
        Assert.Equal(("Training.Steps", "x"), (wrong.Option, wrong.Value));
    }

    /// The CLI's table (BlockwiseLR.Cli.OptionFlags), read from the built blr.dll.
    static (List<(string Flag, string Path)> Table, Func<string, string> PathOfName) CliTable()
    {
        var module = Assembly.LoadFrom(TestPaths.Blr()).GetType("BlockwiseLR.Cli.OptionFlags")!;
        var table = ((IEnumerable)module.GetProperty("table")!.GetValue(null)!)
            .Cast<Tuple<string, string>>()
            .Select(t => (t.Item1, t.Item2))
            .ToList();
        var pathOfName = module.GetMethod("pathOfName")!;
        return (table, name => (string)pathOfName.Invoke(null, [name])!);
    }

    [Fact]
    public void Every_train_flag_maps_to_an_option_and_every_option_back_to_its_flag()
    {
        var (table, pathOfName) = CliTable();
        var (code, help, _) = TestPaths.Run(["train", "--help"]);
        Assert.Equal(0, code);
        var flags = help.Split('\n')
            .Select(l => l.Trim())
            .Where(l => l.StartsWith("--", StringComparison.Ordinal))
            .Select(l => l.Split([' ', ','], 2)[0])
            .Where(f => System.Text.RegularExpressions.Regex.IsMatch(f, "^--[a-z0-9-]+$"))
            .Where(f => f is not ("--config" or "--nproc" or "--help" or "--libtorch"))
            .Distinct()
            .ToList(); // --libtorch: any command
        Assert.Equal(flags.Order(), table.Select(t => t.Flag).Order());
        foreach (var (flag, path) in table)
        {
            var field = OptionFields.Find(path);
            Assert.True(field is not null, $"{flag} -> {path}: no such option");
            Assert.Equal(path, field.Path);
            Assert.Equal(path, pathOfName(field.Name)); // the option's name in messages leads back to the flag
            Assert.Same(field, OptionFields.Named(field.Name));
        }
        // The options no flag sets: a config file or C# sets them.
        var fileOnly = OptionFields.Paths.Except(table.Select(t => t.Path)).Order();
        Assert.Equal(
            ["model.config", "optimizer.beta1", "optimizer.beta2", "optimizer.eps", "optimizer.weightDecayPolicy"],
            fileOnly
        );
    }
}
