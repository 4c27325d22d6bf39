using System.Text.Json;

namespace BlockwiseLR;

/// <summary>A converter's own one-line reason for refusing a value (the serializer's text never reaches a
/// user).</summary>
sealed class OptionValueException(string message) : JsonException(message);
