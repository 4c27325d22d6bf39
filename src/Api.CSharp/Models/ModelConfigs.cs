using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using BlockwiseLR.Core;
using Microsoft.FSharp.Collections;

namespace BlockwiseLR.Models;

/// <summary>Named model configurations, configs of your own, and typed overrides, for C#.</summary>
public static class ModelConfigs
{
    /// <summary>gpt2-tiny, gpt2-small, gpt2-medium, llama-tiny, llama-0.13b ... llama-1.1b.</summary>
    public static IReadOnlyList<string> Names { get; } = ModelConfigModule.named.Select(n => n.Item1).ToList();

    /// <summary>A named config (any case) with <paramref name="overrides"/> applied. Throws
    /// <see cref="ArgumentException"/> with a one-line message.</summary>
    public static ModelConfig Create(string name, ModelOverrides overrides)
    {
        var result = ModelConfigModule.create(name, ListModule.OfSeq(overrides.Pairs()));
        if (result.IsError) throw new ArgumentException(result.ErrorValue);
        return result.ResultValue;
    }

    /// <summary>A named config with KEY=VALUE overrides such as "layers=2" (see <see cref="ModelOverrides.Parse"/>).</summary>
    public static ModelConfig Create(string name, params string[] overrides)
    {
        try { return Create(name, ModelOverrides.Parse(overrides)); }
        catch (FormatException e) { throw new ArgumentException(e.Message); }
    }

    /// <summary>A GPT-2 of your own (nanoGPT's layout: learned positions, LayerNorm, GELU MLP of 4 x width unless
    /// <paramref name="feedForward"/> says otherwise).</summary>
    public static ModelConfig Gpt2(int layers, int width, int heads, int context = 1024, int vocab = 50304,
        bool bias = false, bool tied = true, int? feedForward = null) =>
        Validated(new ModelConfig(Architecture.Gpt2, layers, width, heads, heads, feedForward ?? 4 * width, context, vocab, bias, tied, 1e-5, 10000.0));

    /// <summary>A LLaMA of your own (RoPE, RMSNorm, SwiGLU MLP, grouped-query attention with
    /// <paramref name="kvHeads"/> key/value heads).</summary>
    public static ModelConfig Llama(int layers, int width, int heads, int kvHeads, int feedForward, int context = 1024,
        int vocab = 50304, bool tied = false, double normEps = 1e-5, double ropeTheta = 10000.0) =>
        Validated(new ModelConfig(Architecture.Llama, layers, width, heads, kvHeads, feedForward, context, vocab, false, tied, normEps, ropeTheta));

    /// <summary>This config with <paramref name="overrides"/> applied (and validated).</summary>
    public static ModelConfig With(this ModelConfig config, ModelOverrides overrides)
    {
        var result = ModelConfigModule.withOverrides(ListModule.OfSeq(overrides.Pairs()), config);
        return result.IsOk ? result.ResultValue : throw new ArgumentException(result.ErrorValue);
    }

    /// <summary>The attention shape Adam-mini cuts Q and K by.</summary>
    public static AttentionShape Attention(this ModelConfig config) => ModelConfigModule.attention(config);

    /// <summary>One line: architecture and sizes.</summary>
    public static string Describe(ModelConfig c) =>
        $"{(c.Architecture == Architecture.Gpt2 ? "GPT-2" : "LLaMA")}, {c.Layers} layers, width {c.Width}, " +
        $"{c.Heads} heads ({c.KvHeads} KV, head dim {c.HeadDim}), d_ff {c.FeedForward}, context {c.Context}, " +
        $"vocab {c.Vocab}, {(c.Tied ? "tied" : "untied")} head, {(c.Bias ? "biases" : "no biases")}";

    static ModelConfig Validated(ModelConfig config)
    {
        var valid = ModelConfigModule.validate(config);
        return valid.IsOk ? valid.ResultValue : throw new ArgumentException(valid.ErrorValue);
    }
}

/// <summary>Changes to a named config, each optional. Changing Width keeps d_ff's ratio to the width unless
/// FeedForward is also given; changing a GPT-2's Heads also sets its KvHeads. Written and read in config files
/// as today's list of texts: ["layers=2", "width=64"].</summary>
[JsonConverter(typeof(ModelOverridesConverter))]
public sealed record ModelOverrides
{
    public int? Layers { get; init; }
    public int? Width { get; init; }
    public int? Heads { get; init; }
    public int? KvHeads { get; init; }
    /// <summary>The MLP hidden size (d_ff).</summary>
    public int? FeedForward { get; init; }
    public int? Context { get; init; }
    public int? Vocab { get; init; }
    public bool? Bias { get; init; }
    public bool? Tied { get; init; }
    public double? NormEps { get; init; }
    public double? RopeTheta { get; init; }

    public static ModelOverrides None { get; } = new();

    public bool IsEmpty => this == None;

    /// <summary>The overrides as KEY=VALUE texts, in the order they apply (d-ff last).</summary>
    public IReadOnlyList<string> ToKeyValues() => Pairs().Select(p => $"{p.Item1}={p.Item2}").ToList();

    /// <summary>Reads KEY=VALUE texts (keys: layers, width, heads, kv-heads, d-ff, context, vocab, bias, tied,
    /// norm-eps, rope-theta). Throws <see cref="FormatException"/> naming the text.</summary>
    public static ModelOverrides Parse(IEnumerable<string> keyValues)
    {
        var result = None;
        foreach (var text in keyValues)
        {
            var at = text.IndexOf('=');
            if (at <= 0) throw new FormatException($"model override '{text}' is not KEY=VALUE (keys: {ModelConfigModule.overrideKeys})");
            var (key, value) = (text[..at].Trim().ToLowerInvariant().Replace('_', '-'), text[(at + 1)..].Trim());
            // The core checks each value against a model and gives its message; the typed value comes from it.
            var probe = ModelConfigModule.withOverride(key, value, ModelConfigModule.tryNamed("gpt2-tiny").ResultValue);
            if (probe.IsError) throw new FormatException(probe.ErrorValue);
            var c = probe.ResultValue;
            result = key switch
            {
                "layers" => result with { Layers = c.Layers },
                "width" => result with { Width = c.Width },
                "heads" => result with { Heads = c.Heads },
                "kv-heads" => result with { KvHeads = c.KvHeads },
                "d-ff" or "ff" => result with { FeedForward = c.FeedForward },
                "context" => result with { Context = c.Context },
                "vocab" => result with { Vocab = c.Vocab },
                "bias" => result with { Bias = c.Bias },
                "tied" => result with { Tied = c.Tied },
                "norm-eps" => result with { NormEps = c.NormEps },
                _ => result with { RopeTheta = c.RopeTheta },
            };
        }
        return result;
    }

    internal IEnumerable<Tuple<string, string>> Pairs()
    {
        static string Text(double x) => x.ToString("R", CultureInfo.InvariantCulture);
        if (Layers is { } layers) yield return Tuple.Create("layers", layers.ToString(CultureInfo.InvariantCulture));
        if (Width is { } width) yield return Tuple.Create("width", width.ToString(CultureInfo.InvariantCulture));
        if (Heads is { } heads) yield return Tuple.Create("heads", heads.ToString(CultureInfo.InvariantCulture));
        if (KvHeads is { } kv) yield return Tuple.Create("kv-heads", kv.ToString(CultureInfo.InvariantCulture));
        if (Context is { } context) yield return Tuple.Create("context", context.ToString(CultureInfo.InvariantCulture));
        if (Vocab is { } vocab) yield return Tuple.Create("vocab", vocab.ToString(CultureInfo.InvariantCulture));
        if (Bias is { } bias) yield return Tuple.Create("bias", bias ? "true" : "false");
        if (Tied is { } tied) yield return Tuple.Create("tied", tied ? "true" : "false");
        if (NormEps is { } eps) yield return Tuple.Create("norm-eps", Text(eps));
        if (RopeTheta is { } theta) yield return Tuple.Create("rope-theta", Text(theta));
        if (FeedForward is { } ff) yield return Tuple.Create("d-ff", ff.ToString(CultureInfo.InvariantCulture));
    }
}

sealed class ModelOverridesConverter : JsonConverter<ModelOverrides>
{
    public override ModelOverrides Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        const string expected = "expected a list of KEY=VALUE texts such as [\"layers=2\", \"width=64\"]";
        if (reader.TokenType != JsonTokenType.StartArray) throw new OptionValueException(expected);
        var items = new List<string>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            items.Add(reader.TokenType == JsonTokenType.String ? reader.GetString()! : throw new OptionValueException(expected));
        try { return ModelOverrides.Parse(items); }
        catch (FormatException e) { throw new OptionValueException(e.Message); }
    }

    public override void Write(Utf8JsonWriter writer, ModelOverrides value, JsonSerializerOptions options)
    {
        writer.WriteStartArray();
        foreach (var item in value.ToKeyValues()) writer.WriteStringValue(item);
        writer.WriteEndArray();
    }
}
