//! Fuzzes the allocation-free WebSocket frame reader (`feed::frame`) with arbitrary bytes delivered in reads of a
//! fuzzer-chosen size: it must never panic, never hand out a control frame over 125 bytes, and never a payload
//! larger than its buffer. Run: `cargo +nightly fuzz run ws_frame` from `fuzz/`.
#![no_main]

use aegis_engine::feed::frame::{FrameReader, OpCode};
use libfuzzer_sys::fuzz_target;
use std::io::Read;

struct Chunked<'a>(&'a [u8], usize);

impl Read for Chunked<'_> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.len().min(self.1).min(b.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, bytes)) = data.split_first() else {
        return;
    };
    const CAP: usize = 512;
    let mut src = Chunked(bytes, usize::from(chunk).max(1));
    let mut r = FrameReader::new(CAP);
    loop {
        loop {
            match r.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.payload.len() <= CAP);
                    if matches!(f.opcode, OpCode::Ping | OpCode::Pong | OpCode::Close) {
                        assert!(f.payload.len() <= 125);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        match r.fill(&mut src) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
});
