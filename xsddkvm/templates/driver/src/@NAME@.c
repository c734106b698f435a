#include <linux/init.h>
#include <linux/module.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("@NAME@ driver built with xsddkvm");

static int __init @NAME@_init(void)
{
	pr_info("@NAME@: loaded\n");
	return 0;
}

static void __exit @NAME@_exit(void)
{
	pr_info("@NAME@: unloaded\n");
}

module_init(@NAME@_init);
module_exit(@NAME@_exit);
