// The hot path declares large structs (ParsedPacket) as locals and always assigns them before use; zeroing every
// local in each prologue is wasted work there.
[module: System.Runtime.CompilerServices.SkipLocalsInit]
