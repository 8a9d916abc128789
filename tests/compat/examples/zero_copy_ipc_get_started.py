from shmkit.compat.zero_copy_ipc import ZeroCopyDict; print('✅ Installation successful')
