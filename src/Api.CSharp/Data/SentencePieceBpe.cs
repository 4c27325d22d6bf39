namespace BlockwiseLR.Data;

/// <summary>
/// SentencePiece's BPE encoding (sentencepiece/src/bpe_model.cc, Model::SampleEncode without sampling), on a normalized
/// text: every character (or user-defined symbol, kept whole) a symbol; repeatedly merge the adjacent pair whose
/// joined piece is in the vocabulary with the highest score (ties: the leftmost); unused pieces split back by the
/// merge that made them; a symbol outside the vocabulary becomes its UTF-8 bytes (&lt;0xXX&gt;) with byte fallback,
/// else the unknown id.
/// </summary>
sealed class SentencePieceBpe
{
    // Types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    public sealed record Piece(string Text, float Score, int Type);

    readonly Dictionary<string, (int Id, float Score, int Type)> pieces = [];
    readonly Dictionary<string, int> bytePieces = [];
    readonly List<string> userDefined;
    readonly bool byteFallback;
    readonly int unknown;

    public SentencePieceBpe(IReadOnlyList<Piece> vocabulary, bool byteFallback, int unknown)
    {
        for (var id = 0; id < vocabulary.Count; id++)
        {
            var p = vocabulary[id];
            if (p.Type is 1 or 4 or 5)
                pieces.TryAdd(p.Text, (id, p.Score, p.Type));
            if (p.Type == 6)
                bytePieces[p.Text] = id;
        }
        userDefined = vocabulary.Where(p => p.Type == 4).Select(p => p.Text).OrderByDescending(t => t.Length).ToList();
        (this.byteFallback, this.unknown) = (byteFallback, unknown);
    }

    /// <summary>The pieces of a model file (ModelProto field 1) and whether its trainer spec says BPE (field 2.3 =
    /// 2).</summary>
    public static (List<Piece> Pieces, bool IsBpe) Read(byte[] model)
    {
        var list = new List<Piece>();
        var isBpe = false;
        var input = new Google.Protobuf.CodedInputStream(model);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            var field = Google.Protobuf.WireFormat.GetTagFieldNumber(tag);
            if (field == 1)
            {
                var inner = new Google.Protobuf.CodedInputStream(input.ReadBytes().ToByteArray());
                var (text, score, type) = ("", 0f, 1);
                uint t;
                while ((t = inner.ReadTag()) != 0)
                    switch (Google.Protobuf.WireFormat.GetTagFieldNumber(t))
                    {
                        case 1:
                            text = inner.ReadString();
                            break;
                        case 2:
                            score = inner.ReadFloat();
                            break;
                        case 3:
                            type = inner.ReadEnum();
                            break;
                        default:
                            inner.SkipLastField();
                            break;
                    }
                list.Add(new Piece(text, score, type));
            }
            else if (field == 2)
            {
                var inner = new Google.Protobuf.CodedInputStream(input.ReadBytes().ToByteArray());
                uint t;
                while ((t = inner.ReadTag()) != 0)
                    if (Google.Protobuf.WireFormat.GetTagFieldNumber(t) == 3)
                        isBpe = inner.ReadEnum() == 2;
                    else
                        inner.SkipLastField();
            }
            else
                input.SkipLastField();
        }
        return (list, isBpe);
    }

    struct Symbol
    {
        public int Start,
            Length,
            Prev,
            Next;
        public bool Frozen;
    }

    public IReadOnlyList<int> Encode(string normalized)
    {
        var symbols = new List<Symbol>();
        for (var at = 0; at < normalized.Length; )
        {
            var user = userDefined.FirstOrDefault(u => string.CompareOrdinal(normalized, at, u, 0, u.Length) == 0);
            var length = user?.Length ?? (char.IsHighSurrogate(normalized[at]) && at + 1 < normalized.Length ? 2 : 1);
            symbols.Add(
                new Symbol
                {
                    Start = at,
                    Length = length,
                    Prev = symbols.Count - 1,
                    Next = at + length < normalized.Length ? symbols.Count + 1 : -1,
                    Frozen = user is not null,
                }
            );
            at += length;
        }
        // The agenda: highest score first, then the leftmost pair.
        var agenda = new PriorityQueue<(int Left, int Right, int Size), (float, int)>();
        var revMerge = new Dictionary<string, (string, string)>();
        void MaybeAdd(int left, int right)
        {
            if (left == -1 || right == -1 || symbols[left].Frozen || symbols[right].Frozen)
                return;
            var piece = normalized.Substring(symbols[left].Start, symbols[left].Length + symbols[right].Length);
            if (!pieces.TryGetValue(piece, out var found))
                return;
            agenda.Enqueue((left, right, piece.Length), (-found.Score, left));
            if (found.Type == 5)
                revMerge[piece] = (
                    normalized.Substring(symbols[left].Start, symbols[left].Length),
                    normalized.Substring(symbols[right].Start, symbols[right].Length)
                );
        }
        for (var i = 1; i < symbols.Count; i++)
            MaybeAdd(i - 1, i);
        while (agenda.TryDequeue(out var top, out _))
        {
            var (l, r) = (symbols[top.Left], symbols[top.Right]);
            if (l.Length == 0 || r.Length == 0 || l.Length + r.Length != top.Size || l.Next != top.Right)
                continue;
            l.Length += r.Length;
            l.Next = r.Next;
            if (r.Next >= 0)
            {
                var n = symbols[r.Next];
                n.Prev = top.Left;
                symbols[r.Next] = n;
            }
            r.Length = 0;
            symbols[top.Left] = l;
            symbols[top.Right] = r;
            MaybeAdd(l.Prev, top.Left);
            MaybeAdd(top.Left, l.Next);
        }
        var ids = new List<int>(symbols.Count);
        void Emit(string piece)
        {
            if (pieces.TryGetValue(piece, out var found))
            {
                if (found.Type == 5 && revMerge.TryGetValue(piece, out var split))
                {
                    Emit(split.Item1);
                    Emit(split.Item2);
                }
                else
                    ids.Add(found.Id);
            }
            else if (byteFallback)
                foreach (var b in System.Text.Encoding.UTF8.GetBytes(piece))
                    ids.Add(bytePieces[$"<0x{b:X2}>"]);
            else
                ids.Add(unknown);
        }
        for (var i = symbols.Count == 0 ? -1 : 0; i != -1; i = symbols[i].Next)
            Emit(normalized.Substring(symbols[i].Start, symbols[i].Length));
        return ids;
    }
}
