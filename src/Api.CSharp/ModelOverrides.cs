using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using BlockwiseLR.Core;

namespace BlockwiseLR;

/// <summary>Changes to a named config, each optional. Changing Width keeps d_ff's ratio to the width unless
/// FeedForward is also given; changing a GPT-2's Heads also sets its KvHeads. Written and read in config files
/// as today's list of texts: ["layers=2", "width=64"].</summary>
[JsonConverter(typeof(ModelOverridesConverter))]
public sealed record ModelOverrides
{
    /// <summary>Transformer layers.</summary>
    public int? Layers { get; init; }

    /// <summary>The model width (d_model).</summary>
    public int? Width { get; init; }

    /// <summary>Attention heads.</summary>
    public int? Heads { get; init; }

    /// <summary>Key/value heads (grouped-query attention; equal to Heads for multi-head attention).</summary>
    public int? KvHeads { get; init; }

    /// <summary>The MLP hidden size (d_ff).</summary>
    public int? FeedForward { get; init; }

    /// <summary>The context length in tokens.</summary>
    public int? Context { get; init; }

    /// <summary>The vocabulary size.</summary>
    public int? Vocab { get; init; }

    /// <summary>Whether linear layers and norms have biases.</summary>
    public bool? Bias { get; init; }

    /// <summary>Whether the output head shares the token embedding's tensor.</summary>
    public bool? Tied { get; init; }

    /// <summary>The norms' epsilon.</summary>
    public double? NormEps { get; init; }

    /// <summary>The RoPE base (LLaMA).</summary>
    public double? RopeTheta { get; init; }

    /// <summary>No changes.</summary>
    public static ModelOverrides None { get; } = new();

    /// <summary>True when nothing is changed.</summary>
    public bool IsEmpty => this == None;

    /// <summary>The overrides as KEY=VALUE texts, in the order they apply (d-ff last).</summary>
    public IReadOnlyList<string> ToKeyValues() => Pairs().Select(p => $"{p.Key}={p.Value}").ToList();

    /// <summary>Reads KEY=VALUE texts (keys: layers, width, heads, kv-heads, d-ff, context, vocab, bias, tied,
    /// norm-eps, rope-theta). Throws <see cref="FormatException"/> naming the text.</summary>
    public static ModelOverrides Parse(IEnumerable<string> keyValues)
    {
        var result = None;
        foreach (var text in keyValues)
        {
            var at = text.IndexOf('=');
            if (at <= 0)
                throw new FormatException(
                    $"model override '{text}' is not KEY=VALUE (keys: {ModelConfigRules.OverrideKeys})"
                );
            var (key, value) = (text[..at].Trim().ToLowerInvariant().Replace('_', '-'), text[(at + 1)..].Trim());
            // The core checks each value against a model and gives its message; the typed value comes from it.
            var probe = ModelConfigRules.WithOverride(key, value, ModelConfigRules.TryNamed("gpt2-tiny").Value);
            var c = probe.OrThrow(reason => new FormatException(reason));
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

    internal IEnumerable<KeyValuePair<string, string>> Pairs()
    {
        static string Text(double x) => x.ToString("R", CultureInfo.InvariantCulture);
        if (Layers is { } layers)
            yield return KeyValuePair.Create("layers", layers.ToString(CultureInfo.InvariantCulture));
        if (Width is { } width)
            yield return KeyValuePair.Create("width", width.ToString(CultureInfo.InvariantCulture));
        if (Heads is { } heads)
            yield return KeyValuePair.Create("heads", heads.ToString(CultureInfo.InvariantCulture));
        if (KvHeads is { } kv)
            yield return KeyValuePair.Create("kv-heads", kv.ToString(CultureInfo.InvariantCulture));
        if (Context is { } context)
            yield return KeyValuePair.Create("context", context.ToString(CultureInfo.InvariantCulture));
        if (Vocab is { } vocab)
            yield return KeyValuePair.Create("vocab", vocab.ToString(CultureInfo.InvariantCulture));
        if (Bias is { } bias)
            yield return KeyValuePair.Create("bias", bias ? "true" : "false");
        if (Tied is { } tied)
            yield return KeyValuePair.Create("tied", tied ? "true" : "false");
        if (NormEps is { } eps)
            yield return KeyValuePair.Create("norm-eps", Text(eps));
        if (RopeTheta is { } theta)
            yield return KeyValuePair.Create("rope-theta", Text(theta));
        if (FeedForward is { } ff)
            yield return KeyValuePair.Create("d-ff", ff.ToString(CultureInfo.InvariantCulture));
    }
}

sealed class ModelOverridesConverter : JsonConverter<ModelOverrides>
{
    public override ModelOverrides Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        const string expected = "expected a list of KEY=VALUE texts such as [\"layers=2\", \"width=64\"]";
        if (reader.TokenType != JsonTokenType.StartArray)
            throw new OptionValueException(expected);
        var items = new List<string>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            items.Add(
                reader.TokenType == JsonTokenType.String
                    ? reader.GetString()!
                    : throw new OptionValueException(expected)
            );
        try
        {
            return ModelOverrides.Parse(items);
        }
        catch (FormatException e)
        {
            throw new OptionValueException(e.Message);
        }
    }

    public override void Write(Utf8JsonWriter writer, ModelOverrides value, JsonSerializerOptions options)
    {
        writer.WriteStartArray();
        foreach (var item in value.ToKeyValues())
            writer.WriteStringValue(item);
        writer.WriteEndArray();
    }
}
