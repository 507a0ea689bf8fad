package enum KVMModule {}
