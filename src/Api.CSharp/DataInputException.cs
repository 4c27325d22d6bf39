namespace BlockwiseLR;

/// <summary>Bad input data: <see cref="Exception.Message"/> is one line naming the file and, where it applies,
/// the line, byte offset or token index, and what to do.</summary>
public sealed class DataInputException(string message, params string[] options) : Exception(message)
{
    /// <summary>The options (property names) the message suggests changing, so a front end can say them its
    /// way.</summary>
    public IReadOnlyList<string> Options { get; } = options;
}
