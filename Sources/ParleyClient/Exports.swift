// The terminal grammar is the client's: whoever drives a ChatClient also parses what is typed.
@_exported import ParleyCommands
