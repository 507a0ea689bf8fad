import GuestMemory

extension GuestAddress {
    /// The tests look at boot structures at fixed small addresses: plain (trapping) arithmetic is
    /// what they want. The loader itself uses the checked forms.
    static func + (address: GuestAddress, offset: UInt64) -> GuestAddress {
        GuestAddress(address.rawValue + offset)
    }
}
