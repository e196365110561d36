//! Primitive readers and writers: variable byte integers, UTF-8 strings, binary data.
