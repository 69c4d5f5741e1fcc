//! JSON pointer lookups into arbitrary bodies, with arbitrary pointers: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::jsonptr::Pointer;

fuzz_target!(|data: &[u8]| {
    let Some(nl) = data.iter().position(|b| *b == b'\n') else { return };
    let Ok(ptr) = std::str::from_utf8(&data[..nl]) else { return };
    let Ok(p) = Pointer::parse(ptr) else { return };
    let body = &data[nl + 1..];
    let one = p.lookup(body);
    let all = p.lookup_all(body);
    if let (Ok(Some(first)), Ok(all)) = (one, all) {
        assert_eq!(all.first(), Some(&first));
    }
});
