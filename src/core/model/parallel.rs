//! Parallel: the one place that decides how many threads the CPU inference path uses and how
//! it splits work between them. With the `threads` feature (the native build, and the
//! browser's threaded build where the page is cross-origin isolated, issue 16) work runs on
//! rayon's pool; without it every function here runs its work in order on the calling thread,
//! so the single-threaded builds carry no thread machinery.
//!
//! Why the forward pass enters the pool once ([`run`]), and why the other threads spin through
//! it: a layer's work is split again at every layer, 15 to 20 times a pass, each part a few
//! hundred microseconds. Left to rayon, an idle thread goes to sleep within microseconds and is
//! woken for the next layer, which in the browser (`Atomics.wait`) took long enough that two
//! threads ran the CT network no faster than one (8.3 ms against 8.5, `./build.sh bench`). So
//! while a pass runs, every other thread polls for the parts to take, and sleeps again after.

/// Multiply-accumulates below which a layer runs on one thread: waking another costs more than
/// it saves on the smallest layers.
#[cfg(feature = "threads")]
const MIN_PARALLEL_MACS: usize = 1 << 18;

/// How many threads the CPU inference path may use.
pub fn threads() -> usize {
    #[cfg(feature = "threads")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "threads"))]
    1
}

/// Run `f`, a forward or backward pass, on the pool with every other thread polling for the
/// parts its layers split off, or here without threads. Inside the pool already (an image of a
/// batch in [`map`]) `f` simply runs: the batch keeps the threads busy.
pub fn run<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "threads")]
    if threads() > 1 && rayon::current_thread_index().is_none() {
        let done = std::sync::atomic::AtomicBool::new(false);
        let done = &done;
        return rayon::scope(|scope| {
            let driver = rayon::current_thread_index();
            for _ in 1..threads() {
                scope.spawn(move |_| {
                    // The driver may pop a poller it spawned when it waits for a part: it has
                    // its own work, and polling there would wait for itself.
                    if rayon::current_thread_index() == driver {
                        return;
                    }
                    while !done.load(std::sync::atomic::Ordering::Acquire) {
                        if rayon::yield_now() != Some(rayon::Yield::Executed) {
                            std::hint::spin_loop();
                        }
                    }
                });
            }
            let _finish = Finish(done);
            f()
        });
    }
    f()
}

/// Ends the pollers (sets the pass's `done`) when the pass returns, or unwinds: natively a
/// panic would otherwise leave them polling, and the scope waiting for them, for ever.
#[cfg(feature = "threads")]
struct Finish<'a>(&'a std::sync::atomic::AtomicBool);

#[cfg(feature = "threads")]
impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// `f` of each item, in order, the items shared between the threads (a batch of images: one
/// forward pass per thread at a time, which needs no synchronisation inside a pass).
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    #[cfg(feature = "threads")]
    if threads() > 1 && items.len() > 1 {
        use rayon::prelude::*;
        return items.par_iter().map(f).collect();
    }
    items.iter().map(f).collect()
}

/// Run `f(i, part)` over `data` cut into parts of `size` values (the last may be shorter), the
/// parts shared between the threads where a layer of `macs` multiply-accumulates pays for
/// them. The parts are disjoint slices: no locks, and a result that does not depend on the
/// number of threads.
pub(super) fn in_parts(data: &mut [f32], size: usize, macs: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if size == 0 {
        return;
    }
    #[cfg(feature = "threads")]
    if macs >= MIN_PARALLEL_MACS && data.len() > size && threads() > 1 {
        use rayon::prelude::*;
        data.par_chunks_mut(size).enumerate().for_each(|(i, part)| f(i, part));
        return;
    }
    let _ = macs;
    data.chunks_mut(size).enumerate().for_each(|(i, part)| f(i, part));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_is_visited_once_with_its_index() {
        for (len, size, macs) in [(10, 3, 0), (12, 4, usize::MAX), (5, 5, usize::MAX), (0, 3, usize::MAX), (7, 100, usize::MAX)] {
            let mut data = vec![0.0f32; len];
            in_parts(&mut data, size, macs, |i, part| part.iter_mut().for_each(|v| *v += (i + 1) as f32));
            let want: Vec<f32> = (0..len).map(|j| (j / size + 1) as f32).collect();
            assert_eq!(data, want, "len {len}, parts of {size}");
        }
        assert_eq!(map(&[1, 2, 3, 4], |v| v * 10), vec![10, 20, 30, 40]);
        assert_eq!(run(|| 7), 7);
    }
}
