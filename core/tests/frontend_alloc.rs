//! The streaming front end allocates nothing per frame: counted with a global allocator
//! that tallies allocations made by this test's thread.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use warble_core::frontend::WindowSpec;
use warble_core::{FrontEndConfig, StreamingFrontEnd};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn pushing_and_finishing_never_allocate() {
    let pcm: Vec<f32> = (0..32_000 * 30)
        .map(|i| ((i % 977) as f32 / 977.0) - 0.5)
        .collect();
    for cfg in [FrontEndConfig::birdset(), FrontEndConfig::audioprotopnet()] {
        let hop = 32_000 / cfg.hop_length * cfg.hop_length;
        let spec = WindowSpec {
            length_samples: 160_000,
            hop_samples: hop,
        };
        let mut fe = StreamingFrontEnd::new(cfg, spec).unwrap();
        let mut windows = 0u32;
        let before = allocations();
        for chunk in pcm.chunks(1_000) {
            fe.push(chunk, |_, f| {
                assert!(f[0].is_finite());
                windows += 1;
            });
        }
        fe.finish(|_, _| windows += 1);
        let during = allocations() - before;
        assert!(windows >= 26, "{windows} windows");
        assert_eq!(
            during, 0,
            "{during} allocations while streaming {windows} windows"
        );
    }
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the test above against a counter that never counts.
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 64]);
    assert!(allocations() > before && v.len() == 64);
}
