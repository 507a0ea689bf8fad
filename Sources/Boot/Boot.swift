// Placeholder until this target holds real code.
package enum BootModule {}
