using static TorchSharp.torch;

namespace BlockwiseLR.Models;

/// <summary>The keys and values of every layer for the tokens a generation has seen, so each new token costs one
/// token's forward pass instead of the whole window's. Tensors live outside dispose scopes; Dispose frees
/// them.</summary>
sealed class KvCache(int layers) : IDisposable
{
    readonly Tensor?[] keys = new Tensor?[layers],
        values = new Tensor?[layers];

    /// <summary>Tokens held (the position of the next one).</summary>
    public int Length { get; private set; }

    /// <summary>Appends a layer's new (B, KV, T, hd) keys and values; returns all of them.</summary>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor key, Tensor value)
    {
        var (oldKeys, oldValues) = (keys[layer], values[layer]);
        var allKeys = (oldKeys is null ? key : cat([oldKeys, key], 2)).detach().DetachFromDisposeScope();
        var allValues = (oldValues is null ? value : cat([oldValues, value], 2)).detach().DetachFromDisposeScope();
        oldKeys?.Dispose();
        oldValues?.Dispose();
        (keys[layer], values[layer]) = (allKeys, allValues);
        return (allKeys, allValues);
    }

    /// <summary>Called once per forward pass, after every layer appended: the new tokens are now held.</summary>
    public void Advance(int tokens) => Length += tokens;

    public void Dispose()
    {
        foreach (var t in keys.Concat(values))
            t?.Dispose();
        Array.Clear(keys);
        Array.Clear(values);
        Length = 0;
    }
}
