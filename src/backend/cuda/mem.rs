//! Device memory that never asks the driver for, or hands it back, zero
//! bytes: `cuMemAllocAsync` rejects a zero-byte request with
//! CUDA_ERROR_INVALID_VALUE, and cudarc's `CudaStream::null` makes exactly
//! that request. An empty [`Mem`] is a slice over no memory (a null pointer
//! of length 0), made without calling the driver and leaked, not freed.

use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr, DriverError, LaunchArgs, PushKernelArg};
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A device allocation of `len` elements of `T`, or none when `len` is 0.
#[derive(Debug)]
pub struct Mem<T>(ManuallyDrop<CudaSlice<T>>);

/// Whether a buffer of `len` elements needs the driver at all.
pub fn allocates(len: usize) -> bool {
    len > 0
}

impl<T: DeviceRepr> Mem<T> {
    /// `len` uninitialised elements on `stream` (no driver call when 0).
    ///
    /// # Safety
    /// As `CudaStream::alloc`: the caller writes every element before reading it.
    pub unsafe fn alloc(stream: &Arc<CudaStream>, len: usize) -> Result<Self, DriverError> {
        match allocates(len) {
            true => stream.alloc::<T>(len).map(Self::from),
            false => Ok(Self::empty(stream)),
        }
    }

    /// The empty buffer: no allocation behind it.
    pub fn empty(stream: &Arc<CudaStream>) -> Self {
        // SAFETY: a null pointer of length 0 is never dereferenced (every op
        // guards on length) and never freed (see Drop); event tracking is off
        // (Device::open), so no events are created for it either.
        Mem(ManuallyDrop::new(unsafe { stream.upgrade_device_ptr::<T>(0, 0) }))
    }

    /// A device-side copy (no driver call when empty).
    pub fn try_clone(&self) -> Result<Self, DriverError> {
        match allocates(self.len()) {
            true => self.0.try_clone().map(Self::from),
            false => Ok(Self::empty(self.0.stream())),
        }
    }
}

impl<T> From<CudaSlice<T>> for Mem<T> {
    fn from(s: CudaSlice<T>) -> Self {
        Mem(ManuallyDrop::new(s))
    }
}

impl<T> Deref for Mem<T> {
    type Target = CudaSlice<T>;
    fn deref(&self) -> &CudaSlice<T> {
        &self.0
    }
}

impl<T> DerefMut for Mem<T> {
    fn deref_mut(&mut self) -> &mut CudaSlice<T> {
        &mut self.0
    }
}

// A kernel argument as its slice (the launches pass buffers straight from `alloc`).
// SAFETY (both): forwards to cudarc's own impls for the slice.
unsafe impl<'a, 'b: 'a, T> PushKernelArg<&'b Mem<T>> for LaunchArgs<'a> {
    fn arg(&mut self, arg: &'b Mem<T>) -> &mut Self {
        let slice: &'b CudaSlice<T> = &arg.0;
        self.arg(slice)
    }
}

unsafe impl<'a, 'b: 'a, T> PushKernelArg<&'b mut Mem<T>> for LaunchArgs<'a> {
    fn arg(&mut self, arg: &'b mut Mem<T>) -> &mut Self {
        let slice: &'b mut CudaSlice<T> = &mut arg.0;
        self.arg(slice)
    }
}

impl<T> Drop for Mem<T> {
    fn drop(&mut self) {
        // SAFETY: the slice is taken or dropped exactly once, here.
        unsafe {
            if allocates(self.0.len()) {
                ManuallyDrop::drop(&mut self.0);
            } else {
                ManuallyDrop::take(&mut self.0).leak();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_non_empty_buffers_reach_the_driver() {
        assert!(!allocates(0));
        assert!(allocates(1) && allocates(1 << 40));
    }
}
