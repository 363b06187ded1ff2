package engine

// PLACEHOLDER: the parser is being written (see parse API in the lead's notes).
