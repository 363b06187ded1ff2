package fwpm

// EnumTemplate is the FWPM_FILTER_ENUM_TEMPLATE0 that lists every filter of
// provider at layer, whatever its action: no conditions, overlapping (all
// filters of the layer), every action type.
func EnumTemplate(provider *GUID, layer GUID) FilterEnumTemplate0 {
	return FilterEnumTemplate0{
		ProviderKey: provider,
		LayerKey:    layer,
		EnumType:    FilterEnumOverlapping,
		ActionMask:  ActionMaskAll,
	}
}
