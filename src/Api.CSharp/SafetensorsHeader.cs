using System.Buffers.Binary;
using System.Text.Json;

namespace BlockwiseLR;

/// <summary>Reads the names, dtypes and shapes of a .safetensors file from its header alone (8-byte
/// little-endian length, then JSON), without reading any tensor data.</summary>
internal static class SafetensorsHeader
{
    /// <summary>One tensor in the header.</summary>
    /// <param name="Name">The tensor's name.</param>
    /// <param name="DType">Its dtype as safetensors writes it (F32, BF16, I64...).</param>
    /// <param name="Shape">Its shape.</param>
    public sealed record Entry(string Name, string DType, long[] Shape);

    /// <summary>Throws <see cref="InvalidDataException"/> naming the file and what is wrong.</summary>
    public static IReadOnlyList<Entry> Read(string path)
    {
        using var stream = File.OpenRead(path);
        Span<byte> lengthBytes = stackalloc byte[8];
        if (stream.ReadAtLeast(lengthBytes, 8, throwOnEndOfStream: false) < 8)
            throw new InvalidDataException($"{path}: shorter than a safetensors header (8 bytes)");
        var length = BinaryPrimitives.ReadInt64LittleEndian(lengthBytes);
        if (length <= 0 || length > 100_000_000 || length > stream.Length - 8)
            throw new InvalidDataException(
                $"{path}: header length {length} at byte 0 is not valid for a {stream.Length}-byte safetensors file"
            );
        var json = new byte[length];
        stream.ReadExactly(json);
        try
        {
            using var doc = JsonDocument.Parse(json);
            var dataEnd = doc
                .RootElement.EnumerateObject()
                .Where(p => p.Name != "__metadata__")
                .Select(p => p.Value.TryGetProperty("data_offsets", out var o) ? o[1].GetInt64() : 0)
                .DefaultIfEmpty(0)
                .Max();
            foreach (
                var tensor in doc
                    .RootElement.EnumerateObject()
                    .Where(p => p.Name != "__metadata__" && p.Value.TryGetProperty("data_offsets", out _))
            )
            {
                var dtype = tensor.Value.GetProperty("dtype").GetString() ?? "";
                var size = dtype switch
                {
                    "F64" or "I64" or "U64" => 8,
                    "F32" or "I32" or "U32" => 4,
                    "F16" or "BF16" or "I16" or "U16" => 2,
                    "I8" or "U8" or "BOOL" or "F8_E4M3" or "F8_E5M2" => 1,
                    _ => throw new InvalidDataException(
                        $"{path}: tensor {tensor.Name} has the unknown dtype '{dtype}'"
                    ),
                };
                var offsets = tensor.Value.GetProperty("data_offsets");
                var (begin, end) = (offsets[0].GetInt64(), offsets[1].GetInt64());
                var elements = tensor
                    .Value.GetProperty("shape")
                    .EnumerateArray()
                    .Aggregate(1L, (n, d) => n * d.GetInt64());
                if (begin < 0 || end - begin != elements * size)
                    throw new InvalidDataException(
                        $"{path}: tensor {tensor.Name} ({dtype}, {elements} elements) has data_offsets [{begin}, "
                            + $"{end}], not {elements * size} bytes"
                    );
            }
            if (8 + length + dataEnd > stream.Length)
                throw new InvalidDataException(
                    $"{path}: truncated: its header puts tensor data up to byte {8 + length + dataEnd}, the file has "
                        + $"{stream.Length}; copy or write it again"
                );
            return doc
                .RootElement.EnumerateObject()
                .Where(p => p.Name != "__metadata__")
                .Select(p => new Entry(
                    p.Name,
                    p.Value.GetProperty("dtype").GetString() ?? "",
                    p.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray()
                ))
                .ToList();
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new InvalidDataException(
                $"{path}: the safetensors header (bytes 8..{8 + length}) is not valid JSON of tensor entries"
                    + (e is JsonException j && j.BytePositionInLine is { } at ? $" (near byte {8 + at})" : "")
            );
        }
    }

    /// <summary>Refuses a stored tensor whose dtype cannot stand for the tensor it loads into: floating point loads
    /// into floating point (F16/BF16 weights into an F32 model), anything else only into its own dtype. An I32 header
    /// over bytes meant as F32 would otherwise load as integers converted to floats.</summary>
    internal static void RequireDType(
        string path,
        string name,
        TorchSharp.torch.Tensor stored,
        TorchSharp.torch.ScalarType expected
    )
    {
        if (stored.dtype == expected || (IsFloat(stored.dtype) && IsFloat(expected)))
            return;
        throw new InvalidDataException(
            $"{path}: tensor {name} is {DTypeName(stored.dtype)}, but it loads into {DTypeName(expected)}"
                + (IsFloat(expected) ? " (a floating-point parameter)" : "")
                + "; the file is damaged or not this model's: copy or write it again"
        );
    }

    static bool IsFloat(TorchSharp.torch.ScalarType t) =>
        t
            is TorchSharp.torch.ScalarType.Float16
                or TorchSharp.torch.ScalarType.BFloat16
                or TorchSharp.torch.ScalarType.Float32
                or TorchSharp.torch.ScalarType.Float64;

    /// <summary>A dtype as safetensors headers name it.</summary>
    static string DTypeName(TorchSharp.torch.ScalarType t) =>
        t switch
        {
            TorchSharp.torch.ScalarType.Float16 => "F16",
            TorchSharp.torch.ScalarType.BFloat16 => "BF16",
            TorchSharp.torch.ScalarType.Float32 => "F32",
            TorchSharp.torch.ScalarType.Float64 => "F64",
            TorchSharp.torch.ScalarType.Int8 => "I8",
            TorchSharp.torch.ScalarType.Int16 => "I16",
            TorchSharp.torch.ScalarType.Int32 => "I32",
            TorchSharp.torch.ScalarType.Int64 => "I64",
            TorchSharp.torch.ScalarType.Byte => "U8",
            TorchSharp.torch.ScalarType.Bool => "BOOL",
            _ => t.ToString(),
        };

    /// <summary>Every tensor of a safetensors file, or an <see cref="InvalidDataException"/> naming the file when it
    /// is truncated or its header is not one (instead of the reader's own exception).</summary>
    internal static Dictionary<string, TorchSharp.torch.Tensor> LoadTensors(string path)
    {
        Read(path); // the header: length within the file, valid JSON of tensor entries
        try
        {
            return TorchSharp.PyBridge.Safetensors.LoadStateDict(path);
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException(
                $"{path}: truncated (the file ends before its tensors do); copy or write it again"
            );
        }
        catch (Exception e)
            when (e
                    is ArgumentException
                        or FormatException
                        or OverflowException
                        or InvalidOperationException
                        or KeyNotFoundException
                        or System.Text.Json.JsonException
            )
        {
            throw new InvalidDataException(
                $"{path}: not a readable safetensors file "
                    + $"({e.GetType().Name.Replace("Exception", "").ToLowerInvariant()} error); copy or write it again"
            );
        }
    }
}
