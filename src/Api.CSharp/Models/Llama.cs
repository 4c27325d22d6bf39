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

    public Llama(ModelConfig config, Device device) : base(nameof(Llama), config)
    {
        model = new LlamaBody(config, device, Attend);
        register_module("model", model);
        RegisterUntiedHead(device);
    }

    public override Tensor forward(Tensor tokens)
    {
        CheckLength(tokens);
        var compute = ComputeType;
        var x = model.EmbedTokens.forward(tokens);                                 // (B, T, d) fp32 residual stream
        foreach (var layer in model.Layers)
            x = layer.Forward(x, compute);
        return Head(model.Norm.forward(x), UntiedHead?.Weight ?? model.EmbedTokens.Weight);
    }

    sealed class LlamaBody : ExplicitModule
    {
        public Embedding EmbedTokens { get; }
        public ModuleList<LlamaLayer> Layers { get; }
        public RmsNorm Norm { get; }

        public LlamaBody(ModelConfig c, Device device, Func<Tensor, Tensor, Tensor, Tensor> attend) : base("model")
        {
            var rope = new Rope(c.HeadDim, c.RopeTheta);
            EmbedTokens = new Embedding(c.Vocab, c.Width, device);
            Layers = new ModuleList<LlamaLayer>(Enumerable.Range(0, c.Layers).Select(_ => new LlamaLayer(c, rope, device, attend)).ToArray());
            Norm = new RmsNorm(c.Width, c.NormEps, device);
            register_module("embed_tokens", EmbedTokens);
            register_module("layers", Layers);
            register_module("norm", Norm);
        }
    }

    public sealed class LlamaLayer : ExplicitModule
    {
        readonly RmsNorm inputNorm, postAttentionNorm;
        readonly LlamaAttention attention;
        readonly LlamaMlp mlp;

        public LlamaLayer(ModelConfig c, Rope rope, Device device, Func<Tensor, Tensor, Tensor, Tensor> attend) : base("layer")
        {
            inputNorm = new RmsNorm(c.Width, c.NormEps, device);
            attention = new LlamaAttention(c, rope, device, attend);
            postAttentionNorm = new RmsNorm(c.Width, c.NormEps, device);
            mlp = new LlamaMlp(c, device);
            register_module("input_layernorm", inputNorm);
            register_module("self_attn", attention);
            register_module("post_attention_layernorm", postAttentionNorm);
            register_module("mlp", mlp);
        }

        public Tensor Forward(Tensor x, ScalarType compute)
        {
            x = x + attention.Forward(inputNorm.forward(x).to(compute));
            return x + mlp.Forward(postAttentionNorm.forward(x).to(compute));
        }
    }

    sealed class LlamaAttention : ExplicitModule
    {
        readonly Linear q, k, v, o;
        readonly Rope rope;
        readonly int heads, kvHeads, headDim;
        readonly Func<Tensor, Tensor, Tensor, Tensor> attend;

        public LlamaAttention(ModelConfig c, Rope rope, Device device, Func<Tensor, Tensor, Tensor, Tensor> attend) : base("self_attn")
        {
            this.attend = attend;
            this.rope = rope;
            (heads, kvHeads, headDim) = (c.Heads, c.KvHeads, c.HeadDim);
            q = new Linear(c.Width, heads * headDim, c.Bias, device);
            k = new Linear(c.Width, kvHeads * headDim, c.Bias, device);
            v = new Linear(c.Width, kvHeads * headDim, c.Bias, device);
            o = new Linear(heads * headDim, c.Width, c.Bias, device);
            register_module("q_proj", q);
            register_module("k_proj", k);
            register_module("v_proj", v);
            register_module("o_proj", o);
        }

        public Tensor Forward(Tensor x)
        {
            var (batch, time) = (x.shape[0], x.shape[1]);
            Tensor Heads(Linear projection, int count) => projection.forward(x).view(batch, time, count, headDim).transpose(1, 2);
            var query = rope.Apply(Heads(q, heads));                                // (B, H, T, hd)
            var key = rope.Apply(Heads(k, kvHeads));                                // (B, KV, T, hd)
            var value = Heads(v, kvHeads);
            if (kvHeads != heads)
            {
                // TorchSharp's SDPA has no GQA flag: repeat each KV head for its group of query heads.
                key = key.repeat_interleave(heads / kvHeads, dim: 1);
                value = value.repeat_interleave(heads / kvHeads, dim: 1);
            }
            var y = attend(query, key, value);
            return o.forward(y.transpose(1, 2).contiguous().view(batch, time, heads * headDim));
        }
    }

    sealed class LlamaMlp : ExplicitModule
    {
        readonly Linear gate, up, down;

        public LlamaMlp(ModelConfig c, Device device) : base("mlp")
        {
            gate = new Linear(c.Width, c.FeedForward, c.Bias, device);
            up = new Linear(c.Width, c.FeedForward, c.Bias, device);
            down = new Linear(c.FeedForward, c.Width, c.Bias, device);
            register_module("gate_proj", gate);
            register_module("up_proj", up);
            register_module("down_proj", down);
        }

        public Tensor Forward(Tensor x) => down.forward(nn.functional.silu(gate.forward(x)) * up.forward(x));
    }
}
