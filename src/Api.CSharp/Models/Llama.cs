using BlockwiseLR.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlockwiseLR.Models;

/// <summary>LLaMA as Hugging Face computes it: RMSNorm in fp32, RoPE with rotate_half, grouped-query
/// attention, SiLU-gated MLP, untied head by default. State-dict names are Hugging Face's.</summary>
public sealed class Llama : LanguageModel
{
    readonly LlamaBody model;

    /// <summary>A LLaMA of <paramref name="config"/> with its parameters allocated (uninitialized) on <paramref
    /// name="device"/>.</summary>
    public Llama(ModelConfig config, Device device)
        : base(nameof(Llama), config)
    {
        model = new LlamaBody(config, device, Attend);
        register_module("model", model);
        RegisterUntiedHead(device);
    }

    internal override Tensor Forward(Tensor tokens, KvCache? cache)
    {
        CheckLength(tokens, cache);
        var compute = ComputeType;
        var x = model.EmbedTokens.forward(tokens); // (B, T, d) fp32 residual stream
        for (var layer = 0; layer < model.Layers.Count; layer++)
            x = model.Layers[layer].Forward(x, compute, cache, layer);
        cache?.Advance((int)tokens.shape[1]);
        return Head(model.Norm.forward(x), UntiedHead?.Weight ?? model.EmbedTokens.Weight);
    }

    sealed class LlamaBody : ExplicitModule
    {
        public Embedding EmbedTokens { get; }
        public ModuleList<TransformerBlock> Layers { get; }
        public RmsNorm Norm { get; }

        public LlamaBody(ModelConfig c, Device device, Func<Tensor, Tensor, Tensor, bool, Tensor> attend)
            : base("model")
        {
            var rope = new Rope(c.HeadDim, c.RopeTheta);
            EmbedTokens = new Embedding(c.Vocab, c.Width, device);
            Layers = new ModuleList<TransformerBlock>(
                Enumerable.Range(0, c.Layers).Select(_ => Layer(c, rope, device, attend)).ToArray()
            );
            Norm = new RmsNorm(c.Width, c.NormEps, device);
            register_module("embed_tokens", EmbedTokens);
            register_module("layers", Layers);
            register_module("norm", Norm);
        }
    }

    /// <summary>input_layernorm, self_attn (q/k/v_proj with RoPE on q and k, o_proj), post_attention_layernorm,
    /// mlp.</summary>
    static TransformerBlock Layer(
        ModelConfig c,
        Rope rope,
        Device device,
        Func<Tensor, Tensor, Tensor, bool, Tensor> attend
    ) =>
        new(
            ("input_layernorm", new RmsNorm(c.Width, c.NormEps, device)),
            (
                "self_attn",
                new CausalSelfAttention(c.Width, c.Heads, c.KvHeads, c.HeadDim, c.Bias, "o_proj", rope, attend, device)
            ),
            ("post_attention_layernorm", new RmsNorm(c.Width, c.NormEps, device)),
            ("mlp", new LlamaMlp(c, device))
        );

    /// <summary>gate_proj, up_proj, SiLU gate, down_proj.</summary>
    sealed class LlamaMlp : ExplicitModule<Tensor, Tensor>
    {
        readonly Linear gate,
            up,
            down;

        public LlamaMlp(ModelConfig c, Device device)
            : base("mlp")
        {
            gate = new Linear(c.Width, c.FeedForward, c.Bias, device);
            up = new Linear(c.Width, c.FeedForward, c.Bias, device);
            down = new Linear(c.FeedForward, c.Width, c.Bias, device);
            register_module("gate_proj", gate);
            register_module("up_proj", up);
            register_module("down_proj", down);
        }

        public override Tensor forward(Tensor x) => down.forward(nn.functional.silu(gate.forward(x)) * up.forward(x));
    }
}
