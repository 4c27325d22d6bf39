using BlockwiseLR.Core;

namespace BlockwiseLR.Models;

/// <summary>Named model configurations, configs of your own, and typed overrides, for C#.
/// <para>Argument errors follow .NET's convention: a bad argument of a method here is an
/// <see cref="ArgumentException"/> whose <see cref="ArgumentException.ParamName"/> names that argument (e.g.
/// "heads" for <c>Gpt2(2, 100, 3)</c>, width 100 not divisible by 3 heads) and whose message says what is wrong; a
/// null argument is an <see cref="ArgumentNullException"/>. The same mistake in
/// <see cref="BlockwiseLR.PretrainOptions"/>
/// (e.g. <c>Model.Overrides</c>) is an <see cref="InvalidOptionException"/> naming the option, as every option
/// error is.</para></summary>
public static class ModelConfigs
{
    /// <summary>gpt2-tiny, gpt2-small, gpt2-medium, llama-tiny, llama-0.13b ... llama-1.1b.</summary>
    public static IReadOnlyList<string> Names { get; } = ModelConfigRules.Names;

    /// <summary>A named config (any case) with <paramref name="overrides"/> applied. Throws
    /// <see cref="ArgumentException"/> with a one-line message, its ParamName "name" for an unknown model and
    /// "overrides" for overrides that make no valid model.</summary>
    public static ModelConfig Create(string name, ModelOverrides overrides)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(overrides);
        if (ModelConfigRules.TryNamed(name) is { IsOk: false } unknown)
            throw new ArgumentException(unknown.Error, nameof(name));
        return ModelConfigRules
            .Create(name, overrides.Pairs())
            .OrThrow(reason => new ArgumentException(reason, nameof(overrides)));
    }

    /// <summary>A named config with KEY=VALUE overrides such as "layers=2" (see <see
    /// cref="ModelOverrides.Parse"/>).</summary>
    public static ModelConfig Create(string name, params string[] overrides)
    {
        ArgumentNullException.ThrowIfNull(overrides);
        ModelOverrides parsed;
        try
        {
            parsed = ModelOverrides.Parse(overrides);
        }
        catch (FormatException e)
        {
            throw new ArgumentException(e.Message, nameof(overrides), e);
        }
        return Create(name, parsed);
    }

    /// <summary>A GPT-2 of your own (nanoGPT's layout: learned positions, LayerNorm, GELU MLP of 4 x width unless
    /// <paramref name="feedForward"/> says otherwise).</summary>
    public static ModelConfig Gpt2(
        int layers,
        int width,
        int heads,
        int context = 1024,
        int vocab = 50304,
        bool bias = false,
        bool tied = true,
        int? feedForward = null
    ) =>
        Validated(
            new ModelConfig(
                Architecture.Gpt2,
                layers,
                width,
                heads,
                heads,
                feedForward ?? 4 * width,
                context,
                vocab,
                bias,
                tied,
                1e-5,
                10000.0
            )
        );

    /// <summary>A LLaMA of your own (RoPE, RMSNorm, SwiGLU MLP, grouped-query attention with
    /// <paramref name="kvHeads"/> key/value heads).</summary>
    public static ModelConfig Llama(
        int layers,
        int width,
        int heads,
        int kvHeads,
        int feedForward,
        int context = 1024,
        int vocab = 50304,
        bool tied = false,
        double normEps = 1e-5,
        double ropeTheta = 10000.0
    ) =>
        Validated(
            new ModelConfig(
                Architecture.Llama,
                layers,
                width,
                heads,
                kvHeads,
                feedForward,
                context,
                vocab,
                false,
                tied,
                normEps,
                ropeTheta
            )
        );

    /// <summary>This config with <paramref name="overrides"/> applied (and validated).</summary>
    public static ModelConfig With(this ModelConfig config, ModelOverrides overrides)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(overrides);
        return ModelConfigRules
            .WithOverrides(overrides.Pairs(), config)
            .OrThrow(reason => new ArgumentException(reason, nameof(overrides)));
    }

    /// <summary>The attention shape Adam-mini cuts Q and K by.</summary>
    public static AttentionShape Attention(this ModelConfig config) => ModelConfigRules.Attention(config);

    /// <summary>One line: architecture and sizes.</summary>
    public static string Describe(ModelConfig c) =>
        $"{(c.Architecture == Architecture.Gpt2 ? "GPT-2" : "LLaMA")}, {c.Layers} layers, width {c.Width}, "
        + $"{c.Heads} heads ({c.KvHeads} KV, head dim {c.HeadDim}), d_ff {c.FeedForward}, context {c.Context}, "
        + $"vocab {c.Vocab}, {(c.Tied ? "tied" : "untied")} head, {(c.Bias ? "biases" : "no biases")}";

    /// <summary>The config, or an <see cref="ArgumentException"/> naming the argument of <see cref="Gpt2"/> or
    /// <see cref="Llama"/> that the core's first failed check is about.</summary>
    static ModelConfig Validated(ModelConfig config)
    {
        return ModelConfigRules.Validate(config).OrThrow(reason => new ArgumentException(reason, ParameterAt(config)));
    }

    /// <summary>The argument the core's checks (in their order) first refuse.</summary>
    static string ParameterAt(ModelConfig c) =>
        c.Layers < 1 ? "layers"
        : c.Width < 1 ? "width"
        : c.Heads < 1 ? "heads"
        : c.KvHeads < 1 ? "kvHeads"
        : c.FeedForward < 1 ? "feedForward"
        : c.Context < 1 ? "context"
        : c.Vocab < 1 ? "vocab"
        : c.Width % c.Heads != 0 ? "heads"
        : c.Heads % c.KvHeads != 0 ? "kvHeads"
        : c.Architecture == Architecture.Llama && c.HeadDim % 2 != 0 ? "heads"
        : !(c.NormEps > 0) ? "normEps"
        : "ropeTheta";
}

static class ArgumentErrors
{
    /// <summary>The message without the " (Parameter 'name')" that <see cref="ArgumentException.Message"/>
    /// appends, for a front end that names the option its own way.</summary>
    public static string Reason(this ArgumentException e) =>
        e.ParamName is { } name ? e.Message.Replace($" (Parameter '{name}')", "") : e.Message;
}
