using BlockwiseLR.Models;
using BlockwiseLR.Training;
using static TorchSharp.torch;

namespace BlockwiseLR.Tests;

/// Generation with a KV cache against the plain loop that recomputes the whole window for every token.
public class GenerationTests
{
    [Theory]
    [InlineData("gpt2-tiny", 0.0)]
    [InlineData("gpt2-tiny", 1.0)]
    [InlineData("llama-tiny", 0.0)] // RoPE offsets and grouped-query attention (kv-heads 2 of 4)
    [InlineData("llama-tiny", 1.0)]
    public void The_cached_loop_gives_the_tokens_of_the_full_recompute(string name, double temperature)
    {
        TorchRuntime.EnsureAvailable();
        var config = ModelConfigs.Create(
            name,
            "layers=2",
            "width=32",
            "heads=4",
            name == "llama-tiny" ? "kv-heads=2" : "heads=4",
            "context=40",
            "vocab=64"
        );
        using var model = LanguageModel.Create(config, seed: 5);
        long[] prompt = [1, 2, 3, 4, 5];
        // 30 tokens stay inside the context of 40: both loops see the same windows.
        var plain = TextGenerator.GenerateTokens(model, prompt, 30, temperature, 0, 1.0, 9, 64, cached: false);
        var cached = TextGenerator.GenerateTokens(model, prompt, 30, temperature, 0, 1.0, 9, 64, cached: true);
        Assert.Equal(plain, cached);
        Assert.True(plain.Distinct().Count() > 1, "a constant sequence would hide a wrong cache");
    }

    [Fact]
    public void Past_the_context_the_window_slides_and_says_so()
    {
        TorchRuntime.EnsureAvailable();
        var config = ModelConfigs.Create("gpt2-tiny", "layers=1", "width=16", "heads=2", "context=16", "vocab=64");
        using var model = LanguageModel.Create(config, seed: 5);
        var notes = new List<string>();
        var tokens = TextGenerator.GenerateTokens(model, [1, 2, 3], 60, 1.0, 0, 1.0, 3, 64, cached: true, notes.Add);
        Assert.Equal(60, tokens.Count);
        Assert.Equal(["past the context of 16 tokens, the window slides by 8 tokens and the cache is rebuilt"], notes);
    }
}
