"""Drop-in replacements for the APIs of other shared-memory packages.

Each module has the names, signatures, return values and exceptions its
package documents, as thin layers over shmkit's own structures, so that
switching is a change of one import line:

=================================  ==========================================
``shmkit.compat.shared_hashmap``   ``SharedHashMap`` (PyPI ``shared-hashmap``)
``shmkit.compat.posix_shm``        ``SharedMemory``, ``Queue``, ``Stack``,
                                   ``HashMap``, ``Bitset``, ``Array``
                                   (``posix-shm``)
``shmkit.compat.zero_copy_ipc``    ``ZeroCopyDict`` (PyPI ``zero-copy-ipc``)
``shmkit.compat.sharedbox``        ``SharedDict`` (PyPI ``sharedbox`` 0.2)
``shmkit.compat.shared_allocator`` ``FreeListAllocator``, ``BumpAllocator``,
                                   ``SlabAllocator`` (``shared-allocator``)
=================================  ==========================================

Every object is also the shmkit object it wraps (a subclass), so shmkit's
own methods work on it too.  What differs from each original is in
docs/compat.md.
"""
