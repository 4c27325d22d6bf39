/// The CLI schema: one Argu union per subcommand, with its usage text beside each case.
module BlockwiseLR.Cli.Arguments

open System
open Argu
open BlockwiseLR

/// Library defaults and names, read where the help text mentions them (never restated here).
let private defaults = PretrainOptions.Defaults

let private g (x: float) =
    x.ToString("R", Globalization.CultureInfo.InvariantCulture)

let private names<'T when 'T: struct and 'T: (new: unit -> 'T) and 'T :> ValueType and 'T :> Enum> () =
    String.Join(", ", OptionNames.Known<'T>())

/// A numeric flag's usage with its range from the core's table appended (never typed here): "...; range: >= 1 and
/// <= 8 (4 x this machine's 2 cores)."
let private withRange (case: obj) (text: string) =
    let info, _ = Reflection.FSharpValue.GetUnionFields(case, case.GetType())

    let numeric =
        match info.GetFields() with
        | [| field |] ->
            [ typeof<int>; typeof<int64>; typeof<uint64>; typeof<float> ]
            |> List.contains field.PropertyType
        | _ -> false

    match Core.OptionRanges.tryFind (info.Name.ToLowerInvariant().Replace('_', '-')) with
    | Some range when numeric -> sprintf "%s; %s." (text.TrimEnd('.')) (Core.OptionRanges.describe range)
    | _ -> text

let private warmupDefault = "default: 2% of the run, at least 1"
let private prepareDefaults = PrepareOptions(OutputDirectory = "")
let private corpusDefaults = Data.CorpusOptions()
let private modelNames = String.Join(", ", Models.ModelConfigs.Names)

type ScheduleArgs =
    | [<Mandatory>] Steps of total: int
    | Warmup of steps: int
    | Lr of base_lr: float
    | Ratios of spec: string
    | Schedule of kind: string
    | Floor of lr: float
    | Alpha
    | Untied
    | Points of count: int

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | Steps _ -> "run length T in optimizer steps."
        | Warmup _ -> sprintf "warmup steps W (%s)." warmupDefault
        | Lr _ -> sprintf "base (AdamW) peak LR; a block's peak is ratio x this (default %s)." (g defaults.Schedule.Lr)
        | Ratios _ -> "paper (default), uniform, or a map like emb=10,qk=8,vo=4,ffn=6,norm=1[,head=1]."
        | Schedule _ -> sprintf "%s (default %s)." (names<LrSchedule>()) (OptionNames.Format defaults.Schedule.Kind)
        | Floor _ -> "the one floor every block decays to (default: base LR / 20, the official recipe)."
        | Alpha -> "alpha mode: a block's warmup is ratio times longer (equal warmup slopes)."
        | Untied -> "the output head is its own tensor (LLaMA); default: tied to the embedding (GPT-2)."
        | Points _ -> "evenly spaced steps to print besides the phase boundaries (default 10)."

type BlocksArgs =
    | [<MainCommand; Mandatory>] File of safetensors: string
    | [<AltCommandLine("-r")>] Block_Rule of rule: string
    | Block_Rules of path: string

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | File _ -> "a .safetensors file (only its header is read)."
        | Block_Rule _ ->
            "an extra rule PATTERN=BLOCK (blocks: emb, pe, qk, vo, ffn, norm, head; PATTERN=qk,qk,vo splits a \
             fused projection); repeatable, first wins, before the built-in rules."
        | Block_Rules _ -> "a file of rules, one PATTERN=BLOCK a line, # comments; read before --block-rule."

type PrepareArgs =
    | Input of path: string
    | Builtin of name: string
    | [<Mandatory>] Out of dir: string
    | Glob of pattern: string
    | Field of name: string
    | Column of name: string
    | Val_Fraction of share: float
    | Val_Tokens of tokens: int64
    | Chunk_Tokens of tokens: int
    | Shard_Tokens of tokens: int64
    | Seed of seed: uint64
    | Threads of count: int
    | Replace_Invalid_Utf8
    | Overwrite
    | Restart
    | Tokenizer of name: string

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | Tokenizer _ ->
            sprintf
                "%s (default %s; cl100k and o200k are tiktoken's, written as uint32 shards; %s is a 4,000-piece \
                 SentencePiece BPE of the built-in corpus), or a tokenizer.model, tokenizer.json, or vocab.json + \
                 merges.txt file or folder."
                (String.Join(", ", Data.TextTokenizers.Names))
                prepareDefaults.Tokenizer
                Data.TextTokenizers.BuiltinSmall
        | Restart -> "discard what an interrupted prepare of the same inputs left, instead of resuming it."
        | Input _ -> "a text, .jsonl or .parquet file (.gz allowed) or a folder (searched recursively); repeatable."
        | Builtin _ ->
            "a built-in corpus instead of --input: gutenberg (18 Project Gutenberg books, 3.2M GPT-2 tokens, 3.7M \
             with gutenberg-bpe4k)."
        | Out _ -> "the folder for train_*.bin, val_*.bin and manifest.json."
        | Glob _ -> sprintf "files taken from folders (default %s)." corpusDefaults.Glob
        | Field _ -> sprintf "the .jsonl field holding the text (default %s)." corpusDefaults.JsonField
        | Column _ -> sprintf "the .parquet column holding the text (default %s)." corpusDefaults.ParquetColumn
        | Val_Fraction _ ->
            sprintf
                "share of tokens for validation (default %s; or --val-tokens, not both)."
                (g prepareDefaults.ValFraction)
        | Val_Tokens _ -> "tokens for validation, instead of a fraction (taken from the first block of 1,024 chunks)."
        | Chunk_Tokens _ ->
            sprintf
                "documents are cut at paragraph breaks into chunks of about this many tokens; val is a seeded \
                 choice of chunks (default %d)."
                prepareDefaults.ChunkTokens
        | Shard_Tokens _ ->
            sprintf
                "tokens per shard: shards rotate as the stream is written (default %s, as llm.c)."
                (prepareDefaults.ShardTokens.ToString("N0", Globalization.CultureInfo.InvariantCulture))
        | Seed _ -> sprintf "seed of the val choice (default %d)." prepareDefaults.Seed
        | Threads _ -> "tokenizer threads (default: all cores)."
        | Replace_Invalid_Utf8 -> "replace invalid UTF-8 with U+FFFD instead of stopping."
        | Overwrite -> "replace a dataset already in --out."

type InspectArgs =
    | [<Mandatory>] Model of name: string
    | Layers of count: int
    | Width of size: int
    | Heads of count: int
    | Kv_Heads of count: int
    | D_Ff of size: int
    | Context of tokens: int
    | Vocab of size: int
    | Bias of bool
    | Tied of bool
    | Batch_Size of sequences: int
    | Seq_Len of tokens: int
    | Optimizer of name: string
    | Precision of name: string
    | Device of name: string
    | Nproc of processes: int
    | Zero of stage: int

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | Nproc _ -> "data-parallel processes the optimizer state is sharded over (with --zero 1; default 1)."
        | Zero _ -> "ZeRO stage: 0 (default) or 1 (optimizer state split over --nproc processes)."
        | Model _ -> sprintf "%s." modelNames
        | Layers _ -> "override the number of layers."
        | Width _ -> "override the width (d_ff keeps its ratio to the width unless --d-ff is given)."
        | Heads _ -> "override the attention heads."
        | Kv_Heads _ -> "override the key/value heads (LLaMA grouped-query attention)."
        | D_Ff _ -> "override the MLP hidden size."
        | Context _ -> "override the context length."
        | Vocab _ -> "override the vocabulary size."
        | Bias _ -> "biases on every projection (true/false)."
        | Tied _ -> "tie the output head to the embedding (true/false)."
        | Batch_Size _ -> "sequences per step for the activation estimate (default 8)."
        | Seq_Len _ -> "tokens per sequence (default: the context length)."
        | Optimizer _ -> sprintf "%s (default adamw)." (names<OptimizerKind>())
        | Precision _ ->
            sprintf "%s (default %s)." (names<Precision>()) (OptionNames.Format defaults.Training.Precision)
        | Device _ -> "cpu (default; attention keeps T x T probabilities), cuda or cuda:N (fused attention)."

    /// The model overrides as key=value text for the facade, in command-line order.
    member a.Override =
        match a with
        | Layers n -> Some(sprintf "layers=%d" n)
        | Width n -> Some(sprintf "width=%d" n)
        | Heads n -> Some(sprintf "heads=%d" n)
        | Kv_Heads n -> Some(sprintf "kv-heads=%d" n)
        | D_Ff n -> Some(sprintf "d-ff=%d" n)
        | Context n -> Some(sprintf "context=%d" n)
        | Vocab n -> Some(sprintf "vocab=%d" n)
        | Bias b -> Some(sprintf "bias=%b" b)
        | Tied b -> Some(sprintf "tied=%b" b)
        | _ -> None

type TrainArgs =
    | Config of path: string
    | Model of name: string
    | [<AltCommandLine("-s")>] Set of key_value: string
    | Data of dir: string
    | Optimizer of name: string
    | Ratios of spec: string
    | Lr of base_lr: float
    | Schedule of kind: string
    | Warmup of steps: int
    | Floor of lr: float
    | Alpha
    | Steps of count: int
    | Batch_Size of sequences: int
    | Micro_Batch_Size of sequences: int
    | Seq_Len of tokens: int
    | Seed of seed: uint64
    | Out of dir: string
    | Resume of dir_or_latest: string
    | Overwrite
    | Device of name: string
    | Deterministic
    | Precision of name: string
    | Eval_Every of steps: int
    | Eval_Windows of count: int
    | Checkpoint_Every of steps: int
    | Keep_Checkpoints of count: int
    | Grad_Clip of norm: float
    | Weight_Decay of wd: float
    | Newton_Schulz of precision: string
    | Threads of count: int
    | Init_From of dir: string
    | Peak_Tflops of tflops_or_gpu: string
    | Auto_Alpha of alpha: float
    | Auto_Max_Ratio of ratio: float
    | Auto_Every of steps: int
    | Auto_Smoothing of beta: float
    | Auto_Noise of on_or_off: string
    | Sharpness_Every of steps: int
    | Noise_Scale_Every of steps: int
    | Nproc of processes: int
    | Zero of stage: int
    | Bucket_Mb of mib: float

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | Sharpness_Every _ -> "log the proxy sharpness per block into metrics.jsonl every N steps (default 0: off)."
        | Noise_Scale_Every _ ->
            "log the gradient-noise scale B_simple = tr(Sigma) / |G|^2 in tokens, whole model and per block, \
             into metrics.jsonl every N steps (default 0: off; blr plot draws it, see blr plot --help)."
        | Auto_Noise _ ->
            "--ratios auto: on (default) measures the gradient noise from part of the batch (the first \
             micro-batch, or the first half) against the whole, \
             raises each block's sharpness by its noise and scales the ratios by B / (B + B_noise); off: the \
             sharpness rule alone (docs/method.md section 9)."
        | Nproc _ ->
            "train data-parallel on N processes: under mpirun on the CPU (OpenMPI), one per GPU with NCCL on CUDA \
             (no MPI needed). Under mpirun already, leave it out."
        | Zero _ ->
            sprintf
                "ZeRO stage: 0 (every process keeps all optimizer state) or 1 (each keeps its part; default %d)."
                defaults.Parallelism.Zero
        | Bucket_Mb _ -> sprintf "MiB per gradient all-reduce (default %s)." (g defaults.Parallelism.BucketMb)
        | Auto_Alpha _ ->
            sprintf
                "--ratios auto: r_b = clamp((S_norm / S_b)^alpha, 1, max) (default %s, from the README's \
                 measurement)."
                (g AutoRatioSettings.Default.Alpha)
        | Auto_Max_Ratio _ ->
            sprintf "--ratios auto: the largest ratio (default %s)." (g AutoRatioSettings.Default.MaxRatio)
        | Auto_Every _ ->
            sprintf "--ratios auto: steps between ratio updates (default %d)." AutoRatioSettings.Default.Every
        | Auto_Smoothing _ ->
            sprintf
                "--ratios auto: moving-average factor of the measured sharpness (default %s)."
                (g AutoRatioSettings.Default.Smoothing)
        | Peak_Tflops _ ->
            "the GPU's dense peak TFLOP/s for MFU in metrics.jsonl, or h100, h200, a100 (default h100; CUDA only)."
        | Init_From _ -> "start from the weights of a Hugging Face folder, checkpoint or run (same model shape)."
        | Config _ -> "a JSON file of options (names as in options.json); command-line options override it."
        | Model _ -> sprintf "a named config (default %s; see blr inspect --help)." defaults.Model.Name
        | Set _ -> sprintf "a model override KEY=VALUE (%s); repeatable." Core.ModelConfig.overrideKeys
        | Data _ -> "a folder of shards from blr prepare."
        | Optimizer _ ->
            sprintf "%s (default %s)." (names<OptimizerKind>()) (OptionNames.Format defaults.Optimizer.Kind)
        | Ratios _ ->
            sprintf
                "auto (from each block's measured sharpness and gradient noise), paper, uniform, or a map like \
                 emb=10,qk=8,vo=4,ffn=6,norm=1 (blockwise optimizers; default %s: docs/sweep shows the paper's \
                 fixed ratios losing to tuned AdamW at the batches this machine reaches, auto tying it)."
                (string defaults.Optimizer.Ratios)
        | Lr _ ->
            sprintf "base peak LR (default %s); tune it per optimizer (README: Lion and Muon)." (g defaults.Schedule.Lr)
        | Schedule _ -> sprintf "%s (default %s)." (names<LrSchedule>()) (OptionNames.Format defaults.Schedule.Kind)
        | Warmup _ -> sprintf "warmup steps (%s)." warmupDefault
        | Floor _ -> "the one floor every block decays to (default LR/20)."
        | Alpha -> "alpha warmup: a block's warmup is ratio times longer."
        | Steps _ -> sprintf "optimizer steps (default %d)." defaults.Training.Steps
        | Batch_Size _ -> sprintf "sequences per optimizer step (default %d)." defaults.Training.BatchSize
        | Micro_Batch_Size _ ->
            "sequences per forward/backward; gradients accumulate up to the batch (default: the batch)."
        | Seq_Len _ -> "tokens per sequence (default: the model's context)."
        | Seed _ -> sprintf "seed of initialization and data order (default %d)." defaults.Training.Seed
        | Out _ ->
            sprintf
                "the run folder: options.json, metrics.jsonl, evals.csv, tensorboard/, checkpoints/, result.json \
                 (default %s)."
                defaults.Run.Out
        | Resume _ ->
            "latest (the newest checkpoint in --out) or a checkpoints/step_* folder; options that change the \
             trajectory must be as trained."
        | Overwrite -> "replace the run already in --out (without it, such a folder is refused unless resumed)."
        | Device _ -> sprintf "cpu, cuda or cuda:N (default %O)." defaults.Training.Device
        | Deterministic ->
            "deterministic CUDA kernels (PyTorch's use_deterministic_algorithms); an operation without one fails \
             naming itself."
        | Precision _ ->
            sprintf "%s (default %s)." (names<Precision>()) (OptionNames.Format defaults.Training.Precision)
        | Eval_Every _ -> sprintf "evaluate every N steps (default %d; 0: only at the end)." defaults.Evaluation.Every
        | Eval_Windows _ -> sprintf "validation windows (default %d)." defaults.Evaluation.Windows
        | Checkpoint_Every _ ->
            sprintf "checkpoint every N steps (default %d: only at the end)." defaults.Checkpoint.Every
        | Keep_Checkpoints _ -> sprintf "checkpoints kept (default %d)." defaults.Checkpoint.Keep
        | Grad_Clip _ -> sprintf "global gradient-norm clip (default %s; 0: off)." (g defaults.Training.GradClip)
        | Weight_Decay _ ->
            let recipe f =
                g (Core.OptimizerKinds.Recipe f).WeightDecay

            sprintf
                "weight decay, p *= 1 - lr*wd (default %s; lion: %s)."
                (recipe OptimizerFamily.AdamW)
                (recipe OptimizerFamily.Lion)
        | Newton_Schulz _ ->
            sprintf
                "Muon's Newton-Schulz precision: %s (default auto: bf16 on CUDA, fp32 on the CPU)."
                (names<NewtonSchulzPrecision>())
        | Threads _ -> "CPU threads for libtorch."

type EvalArgs =
    | [<Mandatory>] Model_Dir of path: string
    | Data of dir: string
    | Text of file: string
    | Seq_Len of tokens: int
    | Batch_Size of sequences: int
    | Windows of count: int64
    | Device of name: string
    | Threads of count: int

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | Model_Dir _ ->
            "a checkpoint, a Hugging Face folder (config.json + model.safetensors) or a run folder (its latest \
             checkpoint)."
        | Data _ -> "a prepared dataset: its val split."
        | Text _ ->
            "a text file instead of --data (tokenized with the model's own tokenizer: the one its \
             blr-tokenizer.json names, else GPT-2's)."
        | Seq_Len _ -> "tokens per window (default 256)."
        | Batch_Size _ -> "windows per forward pass (default 8)."
        | Windows _ -> "at most this many non-overlapping windows, from the start (default 256)."
        | Threads _ -> "CPU threads for libtorch (default: libtorch's choice)."
        | Device _ -> "cpu (default), cuda or cuda:N."

type SampleArgs =
    | [<Mandatory>] Model_Dir of path: string
    | Prompt of text: string
    | Max_Tokens of count: int
    | Temperature of t: float
    | Top_K of k: int
    | Top_P of p: float
    | Seed of seed: uint64
    | Device of name: string
    | Threads of count: int

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | Threads _ -> "CPU threads for libtorch (default: libtorch's choice)."
        | Model_Dir _ -> "a checkpoint, a Hugging Face folder or a run folder."
        | Prompt _ -> "the text to continue (default: none, start of a document)."
        | Max_Tokens _ -> "tokens to generate (default 100)."
        | Temperature _ -> "softmax temperature (default 0.8; 0: greedy)."
        | Top_K _ -> "keep the k most likely tokens (default 50; 0: off)."
        | Top_P _ -> "keep the smallest set of tokens whose probability reaches p (default 0.95; 1: off)."
        | Seed _ -> "seed of the sampling (default 1337)."
        | Device _ -> "cpu (default), cuda or cuda:N."

type HfArgs =
    | [<Mandatory>] From of path: string
    | [<Mandatory>] Out of dir: string
    | Overwrite

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | From _ -> "import-hf: a Hugging Face GPT-2 or LLaMA folder; export-hf: a checkpoint or run folder."
        | Out _ -> "the folder to write config.json and model.safetensors (Hugging Face names and layouts) into."
        | Overwrite -> "replace a model already in --out."

type CompareArgs =
    | [<Mandatory>] Data of dir: string
    | Model of name: string
    | [<AltCommandLine("-s")>] Set of key_value: string
    | Optimizers of names: string
    | Seeds of seeds: string
    | [<Mandatory>] Steps of n: int
    | Batch_Size of sequences: int
    | Micro_Batch_Size of sequences: int
    | Seq_Len of tokens: int
    | Lr of base_lr: float
    | Lr_Sweep of base_lrs: string
    | Ratios of spec: string
    | Warmup of steps: int
    | Eval_Every of steps: int
    | Eval_Windows of count: int
    | Out of dir: string
    | Threads of count: int
    | Device of name: string
    | Precision of name: string

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | Data _ -> "a folder of shards from blr prepare."
        | Model _ -> sprintf "a named config (default %s)." defaults.Model.Name
        | Set _ -> "a model override KEY=VALUE; repeatable."
        | Optimizers _ ->
            let compared =
                Reporting.CompareOptions(Common = defaults).Optimizers
                |> Seq.map OptionNames.Format

            sprintf
                "comma-separated, of %s (default %s; lion gets a tenth of AdamW's LR)."
                (String.Join(",", OptionNames.Known<OptimizerKind>()))
                (String.Join(",", compared))
        | Seeds _ -> "comma-separated seeds (default 1337); mean and spread are over these."
        | Steps _ -> "N: every optimizer runs N steps; the AdamW baseline runs 2N."
        | Batch_Size _ -> sprintf "sequences per step (default %d)." defaults.Training.BatchSize
        | Micro_Batch_Size _ -> "sequences per forward/backward (default: the batch)."
        | Seq_Len _ -> "tokens per sequence (default: the model's context)."
        | Lr _ -> sprintf "base LR (default %s)." (g defaults.Schedule.Lr)
        | Lr_Sweep _ -> "comma-separated base LRs for the AdamW(2N) baseline; the best is used for all."
        | Ratios _ -> sprintf "ratios of the blockwise optimizers (default %s)." (string defaults.Optimizer.Ratios)
        | Warmup _ -> sprintf "warmup steps (%s)." warmupDefault
        | Eval_Every _ -> sprintf "evaluate every N steps (default %d)." defaults.Evaluation.Every
        | Eval_Windows _ -> sprintf "validation windows (default %d)." defaults.Evaluation.Windows
        | Out _ -> "the comparison folder (default runs/compare)."
        | Threads _ -> "CPU threads for libtorch."
        | Device _ -> "cpu (default), cuda or cuda:N."
        | Precision _ ->
            sprintf "%s (default %s)." (names<Precision>()) (OptionNames.Format defaults.Training.Precision)

type PlotArgs =
    | [<Mandatory>] Run of dir: string
    | [<Mandatory>] Out of png: string
    | Train
    | Sharpness
    | Noise_Scale

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | Noise_Scale ->
            "plot the gradient-noise scale a run logged (train --noise-scale-every N) in tokens, log scale, the \
             whole model and each block, beside the batch's tokens per step (one --run)."
        | Sharpness ->
            "plot the per-block sharpness a run logged (train --sharpness-every N), log scale, one line per block \
             (one --run)."
        | Run _ -> "a blr train --out folder; repeatable."
        | Out _ -> "the PNG to write."
        | Train -> "plot the train loss (10-step mean) instead of the val loss."

type SharpnessArgs =
    | [<Mandatory>] Run of dir: string
    | [<Mandatory>] Data of dir: string
    | Steps of steps: string
    | Batches of count: int
    | Batch_Size of sequences: int
    | Seq_Len of tokens: int
    | Hutchinson
    | Preconditioned
    | Seed of seed: uint64
    | Threads of count: int
    | Device of name: string

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | Preconditioned ->
            "also the Adam-preconditioned curvature, the diagonal of diag(1/(sqrt(v)+eps)) H, with v from each \
             checkpoint's optimizer state."
        | Run _ -> "a blr train --out folder: its checkpoints are measured."
        | Data _ -> "the prepared dataset: its first val windows are the batches."
        | Steps _ -> "comma-separated checkpoint steps (default: all kept checkpoints)."
        | Batches _ -> "mini-batches (and Hutchinson probes) per checkpoint (default 4)."
        | Batch_Size _ -> "sequences per batch (default 8)."
        | Seq_Len _ -> "tokens per sequence (default 128)."
        | Hutchinson -> "also Hutchinson's mean Hessian diagonal (Hessian-vector products; slower)."
        | Threads _ -> "CPU threads for libtorch (default: libtorch's choice)."
        | Seed _ -> "seed of the Rademacher probes (default 1337)."
        | Device _ -> "cpu, cuda or cuda:N (default cpu)."

type DemoArgs =
    | Quick
    | Out of dir: string
    | Threads of count: int
    | Device of name: string

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | Device _ -> "cpu, cuda or cuda:N (default cpu)."
        | Quick -> "a shorter run (40 steps of 4 x 64 tokens), under a minute."
        | Out _ -> "the folder for data, runs and report (default runs/demo)."
        | Threads _ -> "CPU threads for libtorch (default: libtorch's choice)."

type DoctorArgs =
    | [<Hidden>] Quiet
    | Device of name: string

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | Quiet -> "print nothing on success."
        | Device _ -> "where to compute the check: cpu, cuda or cuda:N (default cpu)."

type CheckFixturesArgs =
    | [<Mandatory>] Fixtures of dir: string
    | Device of name: string

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | Fixtures _ -> "the folder of the Hugging Face fixtures (tests/data: hf-gpt2-tiny, hf-llama-tiny)."
        | Device _ -> "cpu, cuda or cuda:N (default cpu)."

type BlrArgs =
    | [<CliPrefix(CliPrefix.None)>] Schedule of ParseResults<ScheduleArgs>
    | [<CliPrefix(CliPrefix.None)>] Blocks of ParseResults<BlocksArgs>
    | [<CliPrefix(CliPrefix.None)>] Prepare of ParseResults<PrepareArgs>
    | [<CliPrefix(CliPrefix.None)>] Train of ParseResults<TrainArgs>
    | [<CliPrefix(CliPrefix.None)>] Demo of ParseResults<DemoArgs>
    | [<CliPrefix(CliPrefix.None)>] Compare of ParseResults<CompareArgs>
    | [<CliPrefix(CliPrefix.None)>] Plot of ParseResults<PlotArgs>
    | [<CliPrefix(CliPrefix.None)>] Sharpness of ParseResults<SharpnessArgs>
    | [<CliPrefix(CliPrefix.None)>] Eval of ParseResults<EvalArgs>
    | [<CliPrefix(CliPrefix.None)>] Sample of ParseResults<SampleArgs>
    | [<CliPrefix(CliPrefix.None); CustomCommandLine("import-hf")>] Import_Hf of ParseResults<HfArgs>
    | [<CliPrefix(CliPrefix.None); CustomCommandLine("export-hf")>] Export_Hf of ParseResults<HfArgs>
    | [<CliPrefix(CliPrefix.None)>] Inspect of ParseResults<InspectArgs>
    | [<CliPrefix(CliPrefix.None)>] Doctor of ParseResults<DoctorArgs>
    | [<CliPrefix(CliPrefix.None); CustomCommandLine("check-fixtures"); Hidden>] Check_Fixtures of
        ParseResults<CheckFixturesArgs>
    | Version
    | [<Inherit>] Libtorch of dir: string

    interface IArgParserTemplate with
        member a.Usage = withRange a a.Help

    /// The usage text before its range.
    member a.Help =
        match a with
        | Check_Fixtures _ ->
            "the device check's fixture section: logits of the HF fixtures in fp32, tf32 and bf16-mixed against \
             transformers."
        | Libtorch _ -> "load libtorch from this folder (e.g. a PyTorch install's torch/lib; also BLR_LIBTORCH)."
        | Schedule _ -> "print the per-block LR schedule of a run (e.g. blr schedule --steps 2000 --warmup 100)."
        | Blocks _ -> "show which block each parameter of a .safetensors file belongs to, and counts per block."
        | Prepare _ ->
            "tokenize a corpus into llm.c train/val shards (e.g. blr prepare --builtin gutenberg --out \
             data/gutenberg-gpt2)."
        | Train _ ->
            "pre-train a model (e.g. blr train --data data/gutenberg-gpt2 --model gpt2-tiny --steps 300 --seq-len \
             128 --batch-size 8)."
        | Compare _ ->
            "optimizers on the same data, model, seeds and N steps against AdamW at 2N: val loss, the paper's \
             speedup, state bytes, speed."
        | Sharpness _ ->
            "per-block sharpness of a run's checkpoints: the paper's proxy and Hutchinson's estimate, a table, \
             sharpness.csv and sharpness.png."
        | Plot _ ->
            "loss curves of run folders as a PNG (e.g. blr plot --run runs/demo/adamw --run \
             runs/demo/blockwise-adamw-auto --out loss.png)."
        | Eval _ ->
            "loss and perplexity of a model on a dataset's val split or a text file (e.g. blr eval --model-dir \
             runs/demo/adamw --data runs/demo/data)."
        | Sample _ ->
            "generate text (e.g. blr sample --model-dir runs/demo/adamw --prompt 'The whale' --max-tokens 50)."
        | Import_Hf _ -> "check and convert a Hugging Face GPT-2/LLaMA folder (use it with blr train --init-from)."
        | Export_Hf _ -> "write a checkpoint as a Hugging Face folder that transformers loads."
        | Demo _ ->
            "the main job: gpt2-tiny on the built-in corpus, three runs (AdamW; Blockwise AdamW with the paper's \
             ratios; Blockwise AdamW with auto ratios from measured sharpness), a table, loss.png and report.md."
        | Inspect _ -> "parameters per block and a training-memory estimate for a model, without allocating it."
        | Doctor _ -> "check that libtorch loads and computes on this machine."
        | Version -> "print the version."
