using BlockwiseLR.Core;
using BlockwiseLR.Models;
using TorchSharp;
using TorchSharp.PyBridge;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace BlockwiseLR.Tests;

/// Models against Hugging Face (fixtures made with transformers 5.17), closed forms and invariants.
public class ModelTests(ITestOutputHelper output)
{
    static string Data(string relative) => Path.Combine(AppContext.BaseDirectory, "data", relative);

    static ModelConfig Config(string name, params (string Key, string Value)[] overrides) =>
        Models.ModelConfigs.Create(name, overrides.Select(o => $"{o.Key}={o.Value}").ToArray());

    /// Same shape, dtype and values.
    static bool Same(Tensor a, Tensor b) =>
        a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();

    /// HF's loss: mean cross entropy of logits[:, :-1] against ids[:, 1:].
    static Tensor ShiftedLoss(Tensor logits, Tensor ids) => LanguageModel.Loss(logits[.., ..^1], ids[.., 1..]);

    [Theory]
    [InlineData("hf-gpt2-tiny")]
    [InlineData("hf-llama-tiny")]
    public void Fixture_logits_and_loss_match_transformers(string fixture)
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var model = HfFormat.Load(Data(fixture));
        model.eval();
        var expected = Safetensors.LoadStateDict(Data($"{fixture}/expected.safetensors"));
        using var noGrad = no_grad();
        var logits = model.forward(expected["input_ids"]);
        var maxDiff = (logits - expected["logits"]).abs().max().item<float>();
        var loss = ShiftedLoss(logits, expected["input_ids"]).item<float>();
        var expectedLoss = expected["loss"].item<float>();
        output.WriteLine($"{fixture}: max |logits - HF| = {maxDiff:E3}, loss {loss:F7} vs HF {expectedLoss:F7}");
        Assert.Equal(expected["logits"].shape, logits.shape);
        Assert.True(maxDiff <= 1e-4, $"max |logits - HF| = {maxDiff}");
        Assert.True(Math.Abs(loss - expectedLoss) <= 1e-5, $"loss {loss} vs {expectedLoss}");
    }

    [Theory]
    [InlineData("hf-gpt2-tiny")]
    [InlineData("hf-llama-tiny")]
    public void Export_writes_the_fixture_file_back_and_reimports_identically(string fixture)
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var dir = Directory.CreateTempSubdirectory("blr-export-").FullName;
        try
        {
            var model = HfFormat.Load(Data(fixture));
            HfFormat.Save(model, dir);
            // HF names and layouts (Conv1D (in, out), fused c_attn for GPT-2): same header entries as the fixture.
            var original = SafetensorsHeader
                .Read(Data($"{fixture}/model.safetensors"))
                .Select(e => (e.Name, string.Join("x", e.Shape)))
                .Order();
            var exported = SafetensorsHeader
                .Read(Path.Combine(dir, "model.safetensors"))
                .Select(e => (e.Name, string.Join("x", e.Shape)))
                .Order();
            Assert.Equal(original, exported);
            // Every exported tensor equals the original file's, bit for bit.
            var before = Safetensors.LoadStateDict(Data($"{fixture}/model.safetensors"));
            var after = Safetensors.LoadStateDict(Path.Combine(dir, "model.safetensors"));
            Assert.All(before, kv => Assert.True(Same(kv.Value, after[kv.Key]), kv.Key));
            // Re-import: identical parameters and the same config.
            var again = HfFormat.Load(dir);
            Assert.Equal(model.Config, again.Config);
            var reloaded = again.state_dict();
            Assert.All(model.state_dict(), kv => Assert.True(Same(kv.Value, reloaded[kv.Key]), kv.Key));
            Assert.Empty(Directory.GetFiles(dir, "*.tmp-*"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// `blocks` (a model file) and `inspect` (a named model with overrides) print the same parameter count: the sum
    /// of numel of the TorchSharp model's parameters, for HF's own files and for blr's exports of bias-free, tied and
    /// grouped-query models (whose files also hold zero biases or none of a tied head).
    [Theory]
    [InlineData("hf-gpt2-tiny", "")]
    [InlineData("hf-llama-tiny", "")]
    [InlineData("gpt2-tiny", "layers=1,width=32,vocab=64,context=16")] // bias-free: exports zero biases
    [InlineData("gpt2-tiny", "layers=2,width=32,vocab=64,context=16,bias=true,tied=false")]
    [InlineData("llama-tiny", "layers=2,width=32,heads=4,kv-heads=2,vocab=64,context=16,tied=true")]
    [InlineData("llama-tiny", "layers=1,width=32,heads=2,kv-heads=1,vocab=64,context=16,tied=false")]
    public void Blocks_and_inspect_count_the_models_actual_parameters(string model, string overrides)
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var dir = Directory.CreateTempSubdirectory("blr-count-").FullName;
        try
        {
            string folder;
            if (model.StartsWith("hf-", StringComparison.Ordinal))
                folder = Data(model);
            else
            {
                folder = dir;
                var created = LanguageModel.Create(
                    ModelConfigs.Create(model, overrides.Split(',', StringSplitOptions.RemoveEmptyEntries)),
                    seed: 3
                );
                HfFormat.Save(created, folder);
            }
            using var loaded = HfFormat.Load(folder);
            var actual = loaded.parameters().Sum(p => p.numel());
            var c = loaded.Config;

            static long Total(string output) =>
                long.Parse(
                    output
                        .Split('\n')
                        .Last(l => l.StartsWith("total", StringComparison.Ordinal))
                        .Split(' ', StringSplitOptions.RemoveEmptyEntries)[1],
                    System.Globalization.NumberStyles.AllowThousands,
                    System.Globalization.CultureInfo.InvariantCulture
                );
            var (code, blocks, error) = TestPaths.Run(["blocks", Path.Combine(folder, "model.safetensors")]);
            Assert.True(code == 0, error);
            (code, var inspect, error) = TestPaths.Run([
                "inspect",
                "--model",
                c.Architecture == Architecture.Gpt2 ? "gpt2-tiny" : "llama-tiny",
                "--layers",
                $"{c.Layers}",
                "--width",
                $"{c.Width}",
                "--heads",
                $"{c.Heads}",
                "--kv-heads",
                $"{c.KvHeads}",
                "--d-ff",
                $"{c.FeedForward}",
                "--context",
                $"{c.Context}",
                "--vocab",
                $"{c.Vocab}",
                "--bias",
                c.Bias ? "true" : "false",
                "--tied",
                c.Tied ? "true" : "false",
            ]);
            Assert.True(code == 0, error);
            Assert.Equal((actual, actual), (Total(blocks), Total(inspect)));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void A_bias_free_gpt2_exports_zero_biases_and_comes_back_bias_free()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var dir = Directory.CreateTempSubdirectory("blr-export-").FullName;
        try
        {
            var config = Config("gpt2-tiny", ("layers", "1"), ("vocab", "64"), ("context", "16"), ("width", "32"));
            var model = LanguageModel.Create(config, seed: 3);
            HfFormat.Save(model, dir);
            var header = SafetensorsHeader
                .Read(Path.Combine(dir, "model.safetensors"))
                .ToDictionary(e => e.Name, e => e.Shape);
            Assert.Equal([32L, 96L], header["transformer.h.0.attn.c_attn.weight"]);
            Assert.Equal([96L], header["transformer.h.0.attn.c_attn.bias"]);
            var again = HfFormat.Load(dir);
            Assert.False(again.Config.Bias);
            var reloaded = again.state_dict();
            Assert.All(model.state_dict(), kv => Assert.True(Same(kv.Value, reloaded[kv.Key]), kv.Key));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Rope_theta_is_read_from_either_place_and_never_defaulted()
    {
        var dir = Directory.CreateTempSubdirectory("blr-config-").FullName;
        try
        {
            var json = File.ReadAllText(Data("hf-llama-tiny/config.json"));
            Assert.Equal(10000.0, HfFormat.ReadConfig(Data("hf-llama-tiny")).RopeTheta);
            string Write(string text)
            {
                File.WriteAllText(Path.Combine(dir, "config.json"), text);
                return dir;
            }
            var nested = "\"rope_parameters\": {\n    \"rope_theta\": 10000.0,\n    \"rope_type\": \"default\"\n  },";
            Assert.Contains(nested, json);
            Assert.Equal(
                500000.0,
                HfFormat.ReadConfig(Write(json.Replace(nested, "\"rope_theta\": 500000.0,"))).RopeTheta
            );
            var missing = Assert.Throws<InvalidDataException>(() =>
                HfFormat.ReadConfig(Write(json.Replace(nested, "")))
            );
            Assert.Contains("neither rope_parameters.rope_theta nor rope_theta", missing.Message);
            var disagree = Assert.Throws<InvalidDataException>(() =>
                HfFormat.ReadConfig(Write(json.Replace(nested, nested + "\"rope_theta\": 5.0,")))
            );
            Assert.Contains("disagree", disagree.Message);
            var unknown = Assert.Throws<InvalidDataException>(() =>
                HfFormat.ReadConfig(Write(json.Replace("\"llama\"", "\"mistral\"")))
            );
            Assert.StartsWith(Path.Combine(dir, "config.json") + ": model_type 'mistral'", unknown.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Gpt2_small_with_hf_biases_and_vocab_has_exactly_124_439_808_parameters()
    {
        var config = Config("gpt2-small", ("vocab", "50257"), ("bias", "true"));
        Assert.Equal(124_439_808L, ModelConfigModule.parameterCount(config));
        using var model = LanguageModel.Create(config, META);
        Assert.Equal(124_439_808L, model.parameters().Sum(p => p.numel()));
    }

    [Theory]
    [InlineData("llama-0.13b", 133.9)]
    [InlineData("llama-0.25b", 237.3)]
    [InlineData("llama-0.5b", 522.0)]
    [InlineData("llama-0.75b", 743.4)]
    [InlineData("llama-0.9b", 898.3)]
    [InlineData("llama-1.1b", 1175.0)]
    public void Paper_llama_sizes_match_method_md(string name, double millions)
    {
        using var model = LanguageModel.Create(Config(name), META);
        var count = model.parameters().Sum(p => p.numel());
        Assert.Equal(millions, Math.Round(count / 1e6, 1));
    }

    public static TheoryData<string> NamedConfigs() => new(ModelConfigModule.named.Select(n => n.Item1));

    /// Approval test of names and shapes for every named config, built on the meta device (nothing allocated).
    /// A rename would silently move a parameter to another block; this catches it. On a mismatch the test writes
    /// tests/data/approved/NAME.received.txt next to the approved file, to review and rename.
    [Theory]
    [MemberData(nameof(NamedConfigs))]
    public void Names_and_shapes_are_approved_and_every_parameter_has_a_block(string name)
    {
        var config = Config(name);
        using var model = LanguageModel.Create(config, META);
        var shapes = model.ParameterShapes();
        var listing = string.Join("\n", shapes.Select(p => $"{p.Name} ({string.Join(", ", p.Shape)})")) + "\n";
        var approvedPath = Data($"approved/{name}.txt");
        if (!File.Exists(approvedPath) || File.ReadAllText(approvedPath) != listing)
        {
            var received = Path.Combine(FindRepoDir("tests/data/approved"), $"{name}.received.txt");
            File.WriteAllText(received, listing);
            Assert.Fail($"{name}: names and shapes differ from {approvedPath}; review {received}");
        }
        // The core's inventory (used by inspect and the memory estimate) is the model's own.
        var inventory = ModelConfigModule.parameters(config).Select(p => $"{p.Name} ({string.Join(", ", p.Shape)})");
        Assert.Equal(shapes.Select(p => $"{p.Name} ({string.Join(", ", p.Shape)})"), inventory);
        var counts = BlockRules.Default.CountByBlock(shapes);
        Assert.Equal(shapes.Sum(p => p.Shape.Aggregate(1L, (a, b) => a * b)), counts.Values.Sum());
        Assert.Equal(config.Tied, !counts.ContainsKey(Block.OutputHead));
    }

    static string FindRepoDir(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (Directory.Exists(Path.Combine(dir.FullName, relative)))
                return Path.Combine(dir.FullName, relative);
        return Path.GetTempPath();
    }

    [Theory]
    [InlineData("gpt2-tiny")]
    [InlineData("llama-tiny")]
    public void The_same_seed_gives_the_same_weights_with_nanogpt_statistics(string name)
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var config = Config(name);
        var a = LanguageModel.Create(config, seed: 7).state_dict();
        var b = LanguageModel.Create(config, seed: 7).state_dict();
        var c = LanguageModel.Create(config, seed: 8).state_dict();
        Assert.All(a, kv => Assert.True(Same(kv.Value, b[kv.Key]), kv.Key));
        Assert.False(Same(a.First().Value, c.First().Value));
        // N(0, 0.02) on a 50304 x 128 embedding; residual projections N(0, 0.02 / sqrt(2 x 4)).
        var embedding = a[name.StartsWith("gpt2") ? "transformer.wte.weight" : "model.embed_tokens.weight"];
        Assert.InRange(embedding.std().item<float>(), 0.0198, 0.0202);
        Assert.InRange(embedding.mean().item<float>(), -0.0002, 0.0002);
        var residual = a[
            name.StartsWith("gpt2") ? "transformer.h.0.mlp.c_proj.weight" : "model.layers.0.mlp.down_proj.weight"
        ];
        Assert.InRange(residual.std().item<float>(), 0.02 / Math.Sqrt(8) * 0.95, 0.02 / Math.Sqrt(8) * 1.05);
        var norm = a[name.StartsWith("gpt2") ? "transformer.h.0.ln_1.weight" : "model.layers.0.input_layernorm.weight"];
        Assert.True(norm.eq(1).all().item<bool>());
    }

    [Theory]
    [InlineData("hf-gpt2-tiny")]
    [InlineData("hf-llama-tiny")]
    public void Bf16_mixed_precision_logits_are_within_2_percent_of_fp32(string fixture)
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var model = HfFormat.Load(Data(fixture));
        var ids = Safetensors.LoadStateDict(Data($"{fixture}/expected.safetensors"))["input_ids"];
        using var noGrad = no_grad();
        var fp32 = model.forward(ids);
        model.Precision = Precision.Bf16Mixed;
        var bf16 = model.forward(ids);
        Assert.Equal(ScalarType.Float32, bf16.dtype);
        var relative = ((bf16 - fp32).norm() / fp32.norm()).item<float>();
        output.WriteLine($"{fixture}: ||bf16 - fp32|| / ||fp32|| = {relative:P3}");
        Assert.True(relative < 0.02, $"relative error {relative}");
        Assert.True(relative > 0, "bf16 must actually compute in bf16");
    }

    [Fact]
    public void Bf16_mixed_precision_keeps_fp32_master_weights_and_gradients()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var model = LanguageModel.Create(Config("llama-tiny", ("layers", "1"), ("vocab", "64")), seed: 1);
        model.Precision = Precision.Bf16Mixed;
        var ids = randint(0, 64, [2, 8], dtype: int64, generator: new Generator(5));
        LanguageModel.Loss(model.forward(ids), ids).backward();
        Assert.All(model.parameters(), p =>
        {
            Assert.Equal(ScalarType.Float32, p.dtype);
            Assert.Equal(ScalarType.Float32, p.grad!.dtype);
        });
    }
}
