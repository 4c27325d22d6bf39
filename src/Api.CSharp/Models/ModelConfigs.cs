using BlockwiseLR.Core;

namespace BlockwiseLR.Models;

/// <summary>Named model configurations, configs of your own, and typed overrides, for C#.</summary>
public static class ModelConfigs
{
    /// <summary>gpt2-tiny, gpt2-small, gpt2-medium, llama-tiny, llama-0.13b ... llama-1.1b.</summary>
    public static IReadOnlyList<string> Names { get; } = ModelConfigRules.Names;

    /// <summary>A named config (any case) with <paramref name="overrides"/> applied. Throws
    /// <see cref="ArgumentException"/> with a one-line message.</summary>
    public static ModelConfig Create(string name, ModelOverrides overrides)
    {
        return ModelConfigRules.Create(name, overrides.Pairs()).OrThrow(reason => new ArgumentException(reason));
    }

    /// <summary>A named config with KEY=VALUE overrides such as "layers=2" (see <see
    /// cref="ModelOverrides.Parse"/>).</summary>
    public static ModelConfig Create(string name, params string[] overrides)
    {
        try
        {
            return Create(name, ModelOverrides.Parse(overrides));
        }
        catch (FormatException e)
        {
            throw new ArgumentException(e.Message);
        }
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
        return ModelConfigRules
            .WithOverrides(overrides.Pairs(), config)
            .OrThrow(reason => new ArgumentException(reason));
    }

    /// <summary>The attention shape Adam-mini cuts Q and K by.</summary>
    public static AttentionShape Attention(this ModelConfig config) => ModelConfigRules.Attention(config);

    /// <summary>One line: architecture and sizes.</summary>
    public static string Describe(ModelConfig c) =>
        $"{(c.Architecture == Architecture.Gpt2 ? "GPT-2" : "LLaMA")}, {c.Layers} layers, width {c.Width}, "
        + $"{c.Heads} heads ({c.KvHeads} KV, head dim {c.HeadDim}), d_ff {c.FeedForward}, context {c.Context}, "
        + $"vocab {c.Vocab}, {(c.Tied ? "tied" : "untied")} head, {(c.Bias ? "biases" : "no biases")}";

    static ModelConfig Validated(ModelConfig config)
    {
        return ModelConfigRules.Validate(config).OrThrow(reason => new ArgumentException(reason));
    }
}
