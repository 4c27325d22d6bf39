/// A minimal safetensors reader for test oracles (8-byte little-endian header length, JSON header, raw data).
module internal BlockwiseLR.Core.Tests.Safetensors

open System
open System.IO
open System.Text.Json

type Tensor =
    {
        DType: string
        Shape: int64 list
        Bytes: byte[]
    }

let dataPath (relative: string) =
    Path.Combine(AppContext.BaseDirectory, "data", relative)

let read (path: string) : Map<string, Tensor> =
    let bytes = File.ReadAllBytes path
    let headerLength = int (BitConverter.ToInt64(bytes, 0))
    use doc = JsonDocument.Parse(ReadOnlyMemory(bytes, 8, headerLength))

    [
        for entry in doc.RootElement.EnumerateObject() do
            if entry.Name <> "__metadata__" then
                let offsets =
                    entry.Value.GetProperty("data_offsets").EnumerateArray()
                    |> Seq.map (fun e -> e.GetInt64())
                    |> Array.ofSeq

                let start = 8 + headerLength + int offsets[0]

                entry.Name,
                {
                    DType = entry.Value.GetProperty("dtype").GetString()
                    Shape =
                        entry.Value.GetProperty("shape").EnumerateArray()
                        |> Seq.map (fun e -> e.GetInt64())
                        |> List.ofSeq
                    Bytes = bytes[start .. 8 + headerLength + int offsets[1] - 1]
                }
    ]
    |> Map.ofList

let toFloats (t: Tensor) : float[] =
    match t.DType with
    | "F64" -> Array.init (t.Bytes.Length / 8) (fun i -> BitConverter.ToDouble(t.Bytes, 8 * i))
    | "F32" -> Array.init (t.Bytes.Length / 4) (fun i -> float (BitConverter.ToSingle(t.Bytes, 4 * i)))
    | other -> failwithf "unsupported dtype %s" other
