using BlockwiseLR.Core;
using Microsoft.FSharp.Collections;

namespace BlockwiseLR.Models;

/// <summary>Named model configurations and field-by-field overrides, for C#.</summary>
public static class ModelConfigs
{
    /// <summary>gpt2-tiny, gpt2-small, gpt2-medium, llama-tiny, llama-0.13b ... llama-1.1b.</summary>
    public static IReadOnlyList<string> Names { get; } = ModelConfigModule.named.Select(n => n.Item1).ToList();

    /// <summary>A named config with overrides like "layers=2", "kv-heads=1", "bias=true" applied in order
    /// (keys: layers, width, heads, kv-heads, d-ff, context, vocab, bias, tied, norm-eps, rope-theta).
    /// Throws <see cref="ArgumentException"/> with a one-line message.</summary>
    public static ModelConfig Create(string name, params string[] overrides)
    {
        var pairs = overrides.Select(o =>
        {
            var at = o.IndexOf('=');
            if (at <= 0) throw new ArgumentException($"model override '{o}' is not KEY=VALUE (keys: {ModelConfigModule.overrideKeys})");
            return Tuple.Create(o[..at].Trim(), o[(at + 1)..].Trim());
        });
        var result = ModelConfigModule.create(name, ListModule.OfSeq(pairs));
        if (result.IsError) throw new ArgumentException(result.ErrorValue);
        return result.ResultValue;
    }

    /// <summary>One line: architecture and sizes.</summary>
    public static string Describe(ModelConfig c) =>
        $"{(c.Architecture == Architecture.Gpt2 ? "GPT-2" : "LLaMA")}, {c.Layers} layers, width {c.Width}, " +
        $"{c.Heads} heads ({c.KvHeads} KV, head dim {c.HeadDim}), d_ff {c.FeedForward}, context {c.Context}, " +
        $"vocab {c.Vocab}, {(c.Tied ? "tied" : "untied")} head, {(c.Bias ? "biases" : "no biases")}";
}
