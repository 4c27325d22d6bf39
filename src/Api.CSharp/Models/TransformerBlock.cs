using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Models;

/// <summary>What GPT-2 and LLaMA share: a pre-norm residual block, x + attention(norm1(x)) then x + mlp(norm2(x)),
/// the residual stream in fp32 and each sublayer in the compute dtype. Each model names its four children as its
/// Hugging Face state dict does (ln_1/attn/ln_2/mlp, input_layernorm/self_attn/post_attention_layernorm/mlp).</summary>
sealed class TransformerBlock : ExplicitModule
{
    readonly nn.Module<Tensor, Tensor> norm1,
        norm2,
        mlp;
    readonly CausalSelfAttention attention;

    public TransformerBlock(
        (string Name, nn.Module<Tensor, Tensor> Module) norm1,
        (string Name, CausalSelfAttention Module) attention,
        (string Name, nn.Module<Tensor, Tensor> Module) norm2,
        (string Name, nn.Module<Tensor, Tensor> Module) mlp
    )
        : base("block")
    {
        (this.norm1, this.attention, this.norm2, this.mlp) = (norm1.Module, attention.Module, norm2.Module, mlp.Module);
        register_module(norm1.Name, norm1.Module);
        register_module(attention.Name, attention.Module);
        register_module(norm2.Name, norm2.Module);
        register_module(mlp.Name, mlp.Module);
    }

    /// <summary>x: (B, T, d) fp32 residual stream; sublayers compute in <paramref name="compute"/>; with a cache,
    /// this is layer <paramref name="layer"/> of a generation step.</summary>
    public Tensor Forward(Tensor x, ScalarType compute, KvCache? cache = null, int layer = 0)
    {
        x = x + attention.Forward(norm1.forward(x).to(compute), cache, layer);
        return x + mlp.forward(norm2.forward(x).to(compute));
    }
}

/// <summary>The attention core both models use: separate q/k/v projections (Q and K are their own block, V is
/// another), heads of <c>headDim</c>, an optional rotation of queries and keys (LLaMA's RoPE), key/value heads
/// repeated for grouped-query attention, causal attention, and the output projection.</summary>
sealed class CausalSelfAttention : ExplicitModule<Tensor, Tensor>
{
    readonly Linear q,
        k,
        v,
        output;
    readonly int heads,
        kvHeads,
        headDim;
    readonly Rope? rope;
    readonly Func<Tensor, Tensor, Tensor, bool, Tensor> attend;

    /// <summary>Projections from <paramref name="width"/> to <paramref name="heads"/> query heads and
    /// <paramref name="kvHeads"/> key/value heads of <paramref name="headDim"/> each (with
    /// <paramref name="bias"/>), on <paramref name="device"/>; <paramref name="rope"/> rotates queries and keys
    /// when given; <paramref name="outputName"/> is the output projection's state-dict name (GPT-2 c_proj, LLaMA
    /// o_proj); <paramref name="attend"/> is causal attention of (B, H, T, hd) queries, keys and values.</summary>
    public CausalSelfAttention(
        int width,
        int heads,
        int kvHeads,
        int headDim,
        bool bias,
        string outputName,
        Rope? rope,
        Func<Tensor, Tensor, Tensor, bool, Tensor> attend,
        Device device
    )
        : base("attention")
    {
        (this.heads, this.kvHeads, this.headDim, this.rope, this.attend) = (heads, kvHeads, headDim, rope, attend);
        q = new Linear(width, heads * headDim, bias, device);
        k = new Linear(width, kvHeads * headDim, bias, device);
        v = new Linear(width, kvHeads * headDim, bias, device);
        output = new Linear(heads * headDim, width, bias, device);
        register_module("q_proj", q);
        register_module("k_proj", k);
        register_module("v_proj", v);
        register_module(outputName, output);
    }

    /// <summary>x: (B, T, d) in the compute dtype.</summary>
    public override Tensor forward(Tensor x) => Forward(x, null, 0);

    /// <summary>With a cache: x holds the tokens after the cached ones; their keys and values join the cache.</summary>
    public Tensor Forward(Tensor x, KvCache? cache, int layer)
    {
        var (batch, time) = (x.shape[0], x.shape[1]);
        var offset = cache?.Length ?? 0;
        Tensor Heads(Linear projection, int count) =>
            projection.forward(x).view(batch, time, count, headDim).transpose(1, 2);
        var query = Heads(q, heads); // (B, H, T, hd)
        var key = Heads(k, kvHeads); // (B, KV, T, hd)
        var value = Heads(v, kvHeads);
        if (rope is not null)
            (query, key) = (rope.Apply(query, offset), rope.Apply(key, offset));
        if (cache is not null)
            (key, value) = cache.Append(layer, key, value); // (B, KV, offset + T, hd)
        if (kvHeads != heads)
        {
            // TorchSharp's SDPA has no GQA flag: repeat each KV head for its group of query heads.
            key = key.repeat_interleave(heads / kvHeads, dim: 1);
            value = value.repeat_interleave(heads / kvHeads, dim: 1);
        }
        var y = attend(query, key, value, offset == 0);
        return output.forward(y.transpose(1, 2).contiguous().view(batch, time, heads * headDim));
    }
}
